"""The `api` section: the control API that lets your systems follow and act on live calls."""

import ipaddress
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from .fields import Int, _Model, _parse_ip
from .secrets import _parse_env_name


class ApiConfig(_Model):
    """The control API over HTTP: list calls, hang up, transfer, speak, send keys."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    bind: Annotated[str, BeforeValidator(_parse_ip)] = Field(
        "127.0.0.1",
        description="Local IP address of the API listener: 127.0.0.1 (this host only) or an "
        "address of this host. Any other than loopback needs token_env. Default 127.0.0.1.",
    )
    port: Int = Field(
        8080,
        ge=0,
        le=65535,
        description="TCP port of the API listener (0: any free port, for tests). Default 8080.",
    )
    token_env: Annotated[str | None, BeforeValidator(_parse_env_name)] = Field(
        None,
        description="Name of the environment variable holding the bearer token every request "
        "must carry (Authorization: Bearer TOKEN; at least 16 characters). Required unless "
        "bind is a loopback address; default none = no token, loopback only.",
    )

    console: bool = Field(
        True,
        description="Serve the live console at /console/ (behind the same token): calls as "
        "they happen, listen-in, the history of ended calls (docs/console.md). Default true.",
    )

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "ApiConfig":
        if self.token_env is None and not ipaddress.ip_address(self.bind).is_loopback:
            raise ValueError(
                f"bind: {self.bind} is reachable from other hosts; set token_env (the name of "
                "the variable holding the API's bearer token), or bind 127.0.0.1"
            )
        return self
