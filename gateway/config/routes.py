"""The `routes` list: rules that choose an agent profile for a call."""

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

from .fields import _kind, _Model


def _parse_regex(value: object) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a regular expression (text), got {_kind(value)}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None


Regex = Annotated[re.Pattern[str], BeforeValidator(_parse_regex)]


class RouteMatch(_Model):
    """What a call must look like for a route to apply; every given condition must match."""

    dialed: Regex | None = Field(
        None,
        description="Regular expression searched in the dialed number (the user part of the "
        "request URI), e.g. '^1000$' or '^\\+4420'. Anchor with ^ and $ for an exact match.",
    )
    to: Regex | None = Field(
        None, description="Regular expression searched in the user part of the To header."
    )
    caller: Regex | None = Field(
        None,
        description="Regular expression searched in the caller ID (the user part of From).",
    )
    headers: dict[str, Regex] = Field(
        default_factory=dict,
        description="SIP header name (case-insensitive) -> regular expression searched in its "
        "value, e.g. {X-Customer-Tier: '^gold$'}. A missing header does not match.",
    )


class Route(_Model):
    """One routing rule: calls that match use the named agent profile."""

    match: RouteMatch = Field(
        default_factory=RouteMatch,
        description="Conditions on the call; an empty match takes every call.",
    )
    profile: str = Field(description="Name of the profile (under profiles) to use.")
