"""The `realtime` section: the Realtime API endpoint (or the embedded echo agent), its
dialect and its credentials.
"""

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from .fields import Float, _choice, _kind, _Model, _nonblank, _text, sip_target
from .secrets import SECRETS_MESSAGE, _is_secret_name, _parse_env_name

EMBEDDED_ECHO = "embedded:echo"
OPENAI_HOST = "api.openai.com"
_URL_FORMS = (
    "must be embedded:echo (the built-in echo agent, no network or credentials) or a ws:// or "
    "wss:// base URL such as wss://RESOURCE.openai.azure.com/openai/v1/realtime"
)


def _parse_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{_URL_FORMS}; got {_kind(value)}")
    text = value.strip()
    if text.lower().startswith("embedded:"):
        if text.lower() != EMBEDDED_ECHO:
            raise ValueError(f"unknown embedded agent; the only one is {EMBEDDED_ECHO}")
        return EMBEDDED_ECHO
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(f"not a valid URL: it {_URL_FORMS}") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        ws = "wss" if scheme == "https" else "ws"
        raise ValueError(
            f"the Realtime API is a WebSocket endpoint: write {ws}:// instead of {scheme}:// "
            "(e.g. wss://RESOURCE.openai.azure.com/openai/v1/realtime)"
        )
    if scheme not in ("ws", "wss"):
        raise ValueError(_URL_FORMS)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"the URL must not contain a user name or password; {SECRETS_MESSAGE}")
    if not parts.hostname:
        raise ValueError(f"the URL has no host name: it {_URL_FORMS}")
    if parts.query:
        names = [p.split("=", 1)[0] for p in parts.query.split("&")]
        if any(_is_secret_name(n) for n in names):
            raise ValueError(f"the URL must not carry a key; {SECRETS_MESSAGE}")
        raise ValueError(
            "the URL must not have a query string (?...): the gateway adds it; put the "
            "deployment in realtime.deployment and the api-version in realtime.api_version"
        )
    if parts.fragment:
        raise ValueError("the URL must not have a #fragment")
    return text.rstrip("/")


class AuthConfig(_Model):
    """How the gateway authenticates to the Realtime endpoint."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    method: Annotated[
        Literal["api_key", "bearer", "entra", "none"],
        _choice(
            "api_key",
            "bearer",
            "entra",
            "none",
            aliases={"api-key": "api_key", "apikey": "api_key"},
        ),
    ] = Field(
        "api_key",
        description="api_key = Azure's api-key header, the key read from the environment "
        "variable named by api_key_env; bearer = that key sent as 'Authorization: Bearer' "
        "(OpenAI's own API, wss://api.openai.com/v1/realtime); entra = a Microsoft Entra ID "
        "token (managed identity, workload identity or az login); none = no credentials "
        "(e.g. a local test server). Default api_key.",
    )
    api_key_env: Annotated[str, BeforeValidator(_parse_env_name)] = Field(
        "AZURE_OPENAI_API_KEY",
        description="NAME of the environment variable that holds the API key (never the key "
        "itself: keys are not read from this file). Default AZURE_OPENAI_API_KEY.",
    )
    entra_scope: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        "https://cognitiveservices.azure.com/.default",
        description="OAuth scope requested for the Entra ID token (method entra). Default "
        "https://cognitiveservices.azure.com/.default.",
    )


def _failover_target(value: object) -> str:
    return sip_target(_text(value).strip())


class FailoverConfig(_Model):
    """Where a caller goes when the Realtime side cannot take or keep the call."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    target: Annotated[str, BeforeValidator(_failover_target)] = Field(
        description="A sip: or sips: URI (a human, a queue): the caller is sent there with a "
        "302 when the Realtime session cannot be opened, or with a REFER when it is lost "
        "mid-call and cannot be restored, instead of 503 or a BYE."
    )


class RealtimeConfig(_Model):
    """The Realtime API endpoint the calls are bridged to."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: Annotated[str, BeforeValidator(_parse_url)] = Field(
        EMBEDDED_ECHO,
        description="embedded:echo (the built-in echo agent: no network, no credentials) or "
        "the WebSocket base URL of the Realtime API, e.g. "
        "wss://RESOURCE.openai.azure.com/openai/v1/realtime (the gateway adds the query "
        "string). Default embedded:echo.",
    )
    deployment: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        "gpt-realtime",
        description="Azure OpenAI deployment name (or OpenAI model name) to talk to. "
        "Default gpt-realtime.",
    )
    protocol: Annotated[Literal["ga", "preview"], _choice("ga", "preview")] = Field(
        "ga",
        validate_default=True,  # so that the url/protocol check also runs for the default
        description="Realtime API dialect: ga (generally available, /openai/v1/realtime) or "
        "preview (Azure preview API, /openai/realtime, deprecated from 2026-04-30). "
        "Default ga.",
    )
    api_version: str | None = Field(
        None,
        validate_default=True,
        description="Azure api-version, e.g. 2025-04-01-preview: required with protocol "
        "preview, not allowed with ga. Default none.",
    )
    auth: AuthConfig = Field(
        default_factory=AuthConfig,
        description="Credentials for the Realtime endpoint (unused with embedded:echo).",
    )
    audio_format: Annotated[Literal["pcm16", "g711"], _choice("pcm16", "g711")] = Field(
        "pcm16",
        description="Audio sent to and received from the model: pcm16 (16-bit 24 kHz; the "
        "gateway converts from/to the call's G.711) or g711 (the call's G.711 passed through "
        "unchanged). Default pcm16.",
    )
    connect_timeout_s: Float = Field(
        5.0,
        gt=0,
        le=60,
        description="Seconds to wait for the Realtime WebSocket to open before giving up on "
        "the call (more than 0, at most 60). Default 5.0.",
    )
    max_session_s: Float = Field(
        1800.0,
        gt=0,
        le=86_400,
        description="Longest a Realtime session may last, in seconds: Azure ends one at 30 "
        "minutes, OpenAI at 60. A longer call is moved to a fresh session (with the "
        "conversation so far) before this, or before the expiry the service announces if "
        "that comes first (an announced expiry less than 2 s after the session opened, e.g. "
        "one already past, is ignored and logged as realtime.expires_at_ignored). "
        "Default 1800.",
    )
    rollover_margin_s: Float = Field(
        60.0,
        gt=0,
        description="How long before a session's end the gateway opens the next one and "
        "switches over at the first pause in the conversation (no one speaking). Must be "
        "less than max_session_s. Default 60.",
    )
    stall_timeout_s: Float = Field(
        10.0,
        gt=0,
        le=300,
        description="How long the service may stay silent when it owes the gateway "
        "something (a keepalive pong, asked for every half of this, or the rest of an "
        "answer in progress) before the session counts as stalled (log realtime.stalled). "
        "A stalled session is replaced like a dropped one: a new session within 2 s and the "
        "call goes on, or BYE. Default 10.",
    )
    failover: FailoverConfig | None = Field(
        None,
        description="{target: sip:...}: send the caller to a human when the Realtime side "
        "fails (302 before the answer, REFER after). Default none: 503, or a BYE.",
    )
    allow_insecure_ws: bool = Field(
        False,
        description="Let url be ws:// (unencrypted) with auth method api_key, bearer or "
        "entra, sending the key or token in clear text on every connection, even to this "
        "host (another local user may listen on that port). Default false: such a url is a "
        "config error; use wss://. ws:// with method none (a test server) needs no flag.",
    )

    @property
    def embedded(self) -> bool:
        """True when calls go to a built-in agent rather than a remote endpoint."""
        return self.url.startswith("embedded:")

    @field_validator("protocol", mode="after")
    @classmethod
    def _path_matches_protocol(cls, value: str, info: ValidationInfo) -> str:
        url = info.data.get("url")
        if not url or url.startswith("embedded:"):
            return value
        path = urlsplit(url).path.rstrip("/")
        if value == "ga" and path.endswith("/openai/realtime"):
            raise ValueError(
                "realtime.url is an Azure preview endpoint (/openai/realtime); for ga use "
                ".../openai/v1/realtime, or set protocol: preview and an api_version"
            )
        if value == "preview" and path.endswith("/openai/v1/realtime"):
            raise ValueError(
                "realtime.url is a GA endpoint (/openai/v1/realtime); for preview use "
                ".../openai/realtime, or set protocol: ga"
            )
        return value

    @field_validator("api_version", mode="after")
    @classmethod
    def _api_version_matches_protocol(cls, value: str | None, info: ValidationInfo) -> str | None:
        protocol = info.data.get("protocol")
        if value is not None:
            value = value.strip()
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(-[a-z]+)?", value):
                raise ValueError(f"{value!r} is not an api-version such as 2025-04-01-preview")
        if protocol == "preview" and value is None:
            raise ValueError("required when realtime.protocol is preview (e.g. 2025-04-01-preview)")
        if protocol == "ga" and value is not None:
            raise ValueError(
                "only used with realtime.protocol: preview (the GA protocol has no "
                "api-version); remove it"
            )
        return value
