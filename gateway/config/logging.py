"""The `logging` section: log format and level."""

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from .fields import _choice, _Model, _optional


class LoggingConfig(_Model):
    """Log output."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    format: Annotated[
        Literal["json", "console"] | None,
        BeforeValidator(_optional(_choice("json", "console").func)),
    ] = Field(
        None,
        description="json (one JSON object per line, for journald, Loki, ELK) or console "
        "(readable text). Default none = console on a terminal, json otherwise.",
    )
    level: Annotated[
        Literal["debug", "info", "warning", "error"],
        _choice("debug", "info", "warning", "error", aliases={"warn": "warning"}),
    ] = Field(
        "info",
        description="Lowest level logged: debug, info, warning or error. Default info.",
    )
