"""The `sip.outbound` section: calls the gateway places through a trunk, and the toll-fraud
guard around them (which numbers may be called, with which caller IDs, how many at once)."""

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from .fields import (
    Int,
    _choice,
    _kind,
    _Model,
    _nonblank,
    _optional,
    _parse_host,
    _parse_hostport,
    _text,
)
from .secrets import _parse_env_name

MAX_PATTERNS = 100


def _parse_fullmatch(value: object) -> re.Pattern[str]:
    """A pattern a whole number must match (re.fullmatch): `\\+4930\\d+` allows Berlin only,
    never a number that merely contains it."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a regular expression (text), got {_kind(value)}")
    try:
        return re.compile(value.strip())
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None


FullMatch = Annotated[re.Pattern[str], BeforeValidator(_parse_fullmatch)]


def _some(patterns: list[re.Pattern[str]]) -> list[re.Pattern[str]]:
    if not patterns:
        raise ValueError("an empty list allows nothing; list at least one pattern")
    return patterns


class SipOutboundAuthConfig(_Model):
    """Digest credentials for the trunk (answering its 401 and 407 challenges)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    username: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        max_length=128, description="User name the trunk knows the gateway by."
    )
    password_env: Annotated[str, BeforeValidator(_parse_env_name)] = Field(
        description="NAME of the environment variable that holds the trunk password.",
    )


class SipOutboundConfig(_Model):
    """Outbound calls (POST /v1/calls, python -m gateway call): where they go and which are
    allowed. A number or caller ID outside the patterns is refused before anything is sent."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    trunk: Annotated[str, BeforeValidator(_parse_hostport)] = Field(
        description="The trunk or PBX every outbound INVITE goes to, host or host:port "
        "(5060 when no port is written); a host name is looked up without blocking. Its "
        "address must be in sip.allow_from too (its answers and BYEs come from there).",
    )
    transport: Annotated[Literal["udp", "tcp", "tls"], _choice("udp", "tcp", "tls")] = Field(
        "udp",
        description="How the INVITEs travel: udp, tcp or tls; the gateway's own listener of "
        "that transport sends them (it must be in sip.transports). Default udp.",
    )
    auth: SipOutboundAuthConfig | None = Field(
        None,
        description="Digest credentials for the trunk's 401/407 challenges. Default none.",
    )
    from_domain: Annotated[str | None, BeforeValidator(_optional(_parse_host))] = Field(
        None,
        description="Host part of the From URI (sip:CALLER_ID@FROM_DOMAIN) and of the "
        "Request-URI's domain. Default: the trunk's host.",
    )
    caller_ids: Annotated[list[FullMatch], AfterValidator(_some)] = Field(
        max_length=MAX_PATTERNS,
        description="Caller IDs a call may present, as regular expressions the whole caller "
        "ID must match (e.g. '\\+4930123456[0-9]'). A call with any other is refused.",
    )
    destinations: Annotated[list[FullMatch], AfterValidator(_some)] = Field(
        max_length=MAX_PATTERNS,
        description="Numbers the gateway may call, as regular expressions the whole number "
        "must match (e.g. '\\+49[1-9][0-9]{6,12}'): the toll-fraud guard. Any other "
        "destination is refused.",
    )
    max_concurrent: Int = Field(
        10,
        ge=1,
        le=10_000,
        description="Outbound calls in progress at once (ringing or answered); one more is "
        "refused. Default 10.",
    )
    max_per_minute: Int = Field(
        30,
        ge=1,
        le=100_000,
        description="Outbound calls started in any 60 seconds; one more is refused. Default 30.",
    )
    default_caller_id: Annotated[str | None, BeforeValidator(_optional(_text))] = Field(
        None,
        max_length=64,
        description="Caller ID used when a call names none (it must match caller_ids). "
        "Default none: every call names its caller ID.",
    )
    ring_timeout_s: Int = Field(
        30,
        ge=1,
        le=300,
        description="Seconds a call may ring before it is cancelled (no_answer), unless the "
        "request says otherwise. Default 30.",
    )

    @property
    def trunk_address(self) -> tuple[str, int]:
        host, _, port = self.trunk.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def domain(self) -> str:
        return self.from_domain or _parse_host(self.trunk_address[0])


def allowed(patterns: list[re.Pattern[str]], value: str) -> bool:
    """Whether one of the patterns matches the whole of `value`."""
    return any(pattern.fullmatch(value) for pattern in patterns)
