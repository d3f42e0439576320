"""Gateway configuration: the one place where it is defined and validated.

``load_config(path)`` reads a YAML file and returns a :class:`GatewayConfig`, or raises
:class:`ConfigError` listing *every* problem found, one per line, as
``FILE: dotted.field.path: reason`` (list items appear as ``sip.allow_from[1]``).

Secrets never live in the file. The file names an environment variable
(``realtime.auth.api_key_env``); :func:`check_environment` reports whether it is usable and
:func:`api_key` reads it. No error message ever contains a secret value.

The ``description`` of every field is the user-facing config reference: it says what the key
means, its unit and its default, for the PBX engineer who reads the generated reference.
"""

import difflib
import ipaddress
import os
import re
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .destinations import ip_address_or_none, non_public_kind

__all__ = [
    "SECRETS_MESSAGE",
    "AgentConfig",
    "AuthConfig",
    "ConfigError",
    "EchoSuppression",
    "GatewayConfig",
    "InputTranscriptionConfig",
    "LimitsConfig",
    "LocalBargeIn",
    "LoggingConfig",
    "ManualTurns",
    "MediaConfig",
    "MetricsConfig",
    "RealtimeConfig",
    "RecordsConfig",
    "SemanticVad",
    "ServerVad",
    "ServiceConfig",
    "SipAuthConfig",
    "SipConfig",
    "SipRegisterConfig",
    "SipUserConfig",
    "TurnDetection",
    "api_key",
    "check_environment",
    "load_config",
    "parse_config",
    "sip_passwords",
]

SECRETS_MESSAGE = (
    "secrets are not read from the config file; "
    "set the environment variable named by realtime.auth.api_key_env"
)

EMBEDDED_ECHO = "embedded:echo"
OPENAI_HOST = "api.openai.com"
_URL_FORMS = (
    "must be embedded:echo (the built-in echo agent, no network or credentials) or a ws:// or "
    "wss:// base URL such as wss://RESOURCE.openai.azure.com/openai/v1/realtime"
)
DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant answering a telephone call. "
    "Keep every answer short and spoken: one or two sentences, plain words, "
    "no lists, no markdown, no web addresses. "
    "Reply in the caller's language. "
    "If you did not understand the caller, ask them to repeat."
)
Voice = Literal[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"
]
VOICES: tuple[str, ...] = get_args(Voice)
PREVIEW_VOICES = VOICES[:8]  # marin and cedar came with the GA protocol
# The transcription models the service accepts (the openai SDK's list; a test keeps them equal).
TranscriptionModel = Literal[
    "whisper-1",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe",
    "gpt-4o-transcribe-diarize",
    "gpt-realtime-whisper",
]
TRANSCRIPTION_MODELS: tuple[str, ...] = get_args(TranscriptionModel)
PREVIEW_TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
NoiseReduction = Literal["near_field", "far_field"]
MAX_OUTPUT_TOKENS = 4096


class ConfigError(Exception):
    """Carries every problem found, each as 'FILE: dotted.field.path: reason'."""

    errors: list[str]

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


# --------------------------------------------------------------------------------------------
# Reusable field validators. They raise ValueError with a message written for the reader of
# the config file; _format_errors() puts the file name and dotted path in front.


def _kind(value: object) -> str:
    """Name a YAML value's type the way a config file author sees it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (YAML reads unquoted yes/no/on/off as true/false)"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _one_of(options: Sequence[str]) -> str:
    quoted = [str(o) for o in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _choice(
    *options: str, upper: bool = False, aliases: Mapping[str, str] | None = None
) -> BeforeValidator:
    """Accept one of ``options`` case-insensitively, normalised to lower (or upper) case."""

    def check(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"expected {_one_of(options)}, got {_kind(value)}")
        norm = value.strip().upper() if upper else value.strip().lower()
        norm = (aliases or {}).get(norm, norm)
        if norm not in options:
            raise ValueError(f"{value!r} is not accepted; use {_one_of(options)}")
        return norm

    return BeforeValidator(check)


def _unique_nonempty(what: str) -> AfterValidator:
    def check(items: list[Any]) -> list[Any]:
        if not items:
            raise ValueError(f"must list at least one {what}")
        seen: set[Any] = set()
        for item in items:
            if item in seen:
                raise ValueError(f"{item!r} is listed twice")
            seen.add(item)
        return items

    return AfterValidator(check)


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Run ``check`` on a value unless it is None (null = not set)."""
    return lambda value: None if value is None else check(value)


def _number(value: object) -> object:
    """Refuse true/false where a number belongs (pydantic would read true as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {_kind(value)}")
    return value


Int = Annotated[int, BeforeValidator(_number)]
Float = Annotated[float, BeforeValidator(_number)]


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {_kind(value)}")
    return value


def _nonblank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _parse_ip(value: object) -> str:
    text = _text(value).strip().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address; use 0.0.0.0 (every IPv4 interface), "
            ":: (every IPv6 interface) or one address of this host"
        ) from None


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def _parse_host(value: object) -> str:
    text = _text(value).strip().removeprefix("[").removesuffix("]")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        name = text.removesuffix(".")
        labels = name.split(".")
        if (
            0 < len(name) <= 253
            and all(_HOST_LABEL.match(label) for label in labels)
            and not labels[-1].isdigit()
        ):
            return text
        raise ValueError(f"{value!r} is neither an IP address nor a valid host name") from None
    if ip.is_unspecified:
        raise ValueError(
            f"{text} cannot be advertised (peers cannot send to it); give the address the "
            "PBX should send to, or leave this empty to use the address of the socket"
        )
    return str(ip)


def _parse_hostport(value: object) -> str:
    """host or host:port (IPv6 in brackets); the port defaults to 5060."""
    text = _text(value).strip()
    host, port = text, "5060"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    host = _parse_host(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_network(value: object) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(
            f"expected a network such as 192.168.1.0/24 or 2001:db8::/32, got {_kind(value)}"
        )
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or a network in CIDR form "
            "(such as 192.168.1.0/24, 10.1.2.3 or 2001:db8::/32)"
        ) from None


NetworkEntry = Annotated[
    IPNetwork,
    PlainValidator(_parse_network, json_schema_input_type=str),
    PlainSerializer(str, return_type=str),
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _looks_like_secret_value(text: str) -> bool:
    """True for something that looks like an API key or token rather than a variable name."""
    return (
        "sk-" in text
        or text.startswith(("eyJ", "Bearer ", "bearer "))  # a JWT or an Authorization header
        # Azure keys: 32 hex digits or 84 mixed-case alphanumerics; names are UPPER_CASE
        or (
            len(text) >= 24
            and "_" not in text
            and (any(c.islower() for c in text) or sum(c.isdigit() for c in text) >= 4)
        )
    )


def _parse_env_name(value: object) -> str:
    # Never echo the value: someone may have pasted the key itself here.
    if not isinstance(value, str):
        raise ValueError(f"expected the name of an environment variable, got {_kind(value)}")
    text = value.strip()
    if _looks_like_secret_value(text):
        raise ValueError(
            "this looks like an API key itself, not the name of an environment variable: "
            "secrets are not read from the config file; put the key in an environment "
            "variable (e.g. AZURE_OPENAI_API_KEY) and write that variable's name here"
        )
    if not _ENV_NAME.match(text):
        raise ValueError(
            "must be the name of an environment variable (letters, digits and _, not starting "
            "with a digit), such as AZURE_OPENAI_API_KEY"
        )
    return text


_SECRET_PARTS = ("password", "passwd", "secret", "apikey", "credential")  # inside any key
_SECRET_WORDS = {"key", "token", "pwd", "pass", "bearer", "sig"}  # as a whole word


def _is_secret_name(key: str) -> bool:
    """Does a key (or a URL query parameter) look like it would hold a secret?

    ``api_key``, ``apiKey``, ``client_secret``, ``access_token``, ``password`` do;
    ``max_output_tokens`` or ``monkey`` do not.
    """
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    words = set(re.split(r"[^a-z0-9]+", snake))
    squashed = re.sub(r"[^a-z0-9]", "", snake)
    return any(part in squashed for part in _SECRET_PARTS) or bool(words & _SECRET_WORDS)


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


# --------------------------------------------------------------------------------------------
# Models


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields by the key written in YAML (the alias, where there is one)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_section_means_defaults(cls, data: Any) -> Any:
        """``sip:`` with nothing under it (YAML null) means "all defaults", like ``sip: {}``."""
        if isinstance(data, dict):
            empty = [
                key
                for key, value in data.items()
                if value is None and key in _keys(cls) and _is_model(_keys(cls)[key].annotation)
            ]
            if empty:
                data = {k: v for k, v in data.items() if k not in empty}
        return data


class SipUserConfig(_Model):
    """One account a PBX may authenticate its INVITEs with."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    username: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        description="User name the PBX sends in its digest credentials.",
    )
    password_env: Annotated[str, BeforeValidator(_parse_env_name)] = Field(
        description="NAME of the environment variable that holds this user's password (never "
        "the password itself).",
    )


class SipAuthConfig(_Model):
    """Digest authentication of inbound INVITEs (RFC 3261 §22), for PBXs that send credentials."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    realm: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        "sip-realtime-gateway",
        description="Realm in the 401 challenge; the PBX's credentials must name it. Default "
        "sip-realtime-gateway.",
    )
    users: list[SipUserConfig] = Field(
        min_length=1,
        description="Accounts allowed to place calls. An INVITE without valid credentials "
        "gets 401 Unauthorized with one challenge per algorithm (qop=auth); credentials "
        "without qop, with a nonce count already used, or made for another Request-URI "
        "(400) are refused.",
    )
    algorithms: Annotated[
        list[Annotated[Literal["SHA-256", "MD5"], _choice("SHA-256", "MD5", upper=True)]],
        _unique_nonempty("algorithm"),
    ] = Field(
        default_factory=lambda: ["MD5", "SHA-256"],
        description="Digest algorithms offered in the 401, one WWW-Authenticate line each, "
        "in order of preference (RFC 8760): MD5 and SHA-256. A caller that answers only the "
        "first challenge and knows only MD5 fails on a SHA-256 one (seen with baresip 1.0 of "
        "Debian 12, SIPp 3.6, SIPVicious 0.3.8; PBXs whose SIP stack predates RFC 8760 may "
        "do the same), so MD5 comes first by default and an upgrade breaks no trunk; put "
        "SHA-256 first once every PBX that calls supports it. Default [MD5, SHA-256].",
    )
    max_failures: Int = Field(
        10,
        ge=0,
        le=10_000,
        description="Failed authentication attempts (wrong password, unknown user, replayed "
        "or malformed credentials; not the first INVITE without credentials) from one "
        "source IP address within failure_window_s after which that source is blocked: "
        "its INVITEs get 403 Forbidden, without a challenge, for block_s (log "
        "sip.auth_blocked, metric sipgw_auth_blocks_total). Only credentials built on a "
        "challenge sent to that address count, so a spoofed source cannot get a PBX "
        "blocked. 0 = never block. Default 10.",
    )
    failure_window_s: Float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Seconds over which failed attempts from one source are counted "
        "towards max_failures. Default 60.",
    )
    block_s: Float = Field(
        600.0,
        gt=0,
        le=86_400 * 7,
        description="Seconds a source stays blocked once it reached max_failures. Default 600.",
    )


class SipRegisterConfig(_Model):
    """Registration mode: the gateway registers to a PBX as an extension and takes its calls."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    registrar: Annotated[str, BeforeValidator(_parse_hostport)] = Field(
        description="Registrar (the PBX) as host or host:port, e.g. pbx.example.com:5060. "
        "REGISTER goes there over UDP (or TLS, see transport); the PBX's address must also "
        "be in sip.allow_from.",
    )
    user: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        description="Extension to register, the user part of the address of record "
        "sip:USER@DOMAIN.",
    )
    domain: Annotated[str | None, BeforeValidator(_optional(_parse_host))] = Field(
        None,
        description="Domain of the address of record. Default: the registrar's host.",
    )
    auth_user: Annotated[str | None, BeforeValidator(_optional(_text))] = Field(
        None,
        description="User name for digest authentication, when it differs from user. "
        "Default: user.",
    )
    password_env: Annotated[str, BeforeValidator(_parse_env_name)] = Field(
        description="NAME of the environment variable that holds the extension's password.",
    )
    transport: Annotated[Literal["udp", "tls"], _choice("udp", "tls")] = Field(
        "udp",
        description="How REGISTER travels: udp, or tls (needs tls in sip.transports): a "
        "connection the gateway opens to the registrar and keeps, the registrar's "
        "certificate checked against its host name (sip.tls.ca_file, else the system's "
        "CAs), and the PBX's calls coming over it. Write the registrar's TLS port (usually "
        "5061): a registrar without one means port 5060. Default udp.",
    )
    expires: Int = Field(
        300,
        ge=30,
        le=86400,
        description="Registration interval asked for, in seconds (30-86400); refreshed at 90 % "
        "of what the registrar grants. Default 300.",
    )

    @property
    def registrar_address(self) -> tuple[str, int]:
        host, _, port = self.registrar.rpartition(":")
        return host.strip("[]"), int(port)


class SipTcpConfig(_Model):
    """Limits of the SIP over TCP listener: what one peer, or many, may hold open."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    max_connections: Int = Field(
        1024,
        ge=1,
        description="Most TCP connections open at once; a connection beyond it is closed at "
        "accept. Default 1024.",
    )
    max_connections_per_source: Int = Field(
        64,
        ge=1,
        description="Most TCP connections open at once from one IP address. Default 64.",
    )
    idle_timeout_s: float = Field(
        120.0,
        gt=0,
        description="A connection that carries no call and sends nothing this long is closed "
        "(seconds). Default 120.",
    )
    message_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Once a message has begun, all of it (headers and body) must arrive within "
        "this many seconds, or the connection is closed (a slowloris peer). Default 10.",
    )
    max_send_buffer_kib: Int = Field(
        256,
        ge=16,
        description="Most data queued toward a peer that does not read it (KiB); beyond it "
        "the connection is closed. Default 256.",
    )


def _file_path(value: object) -> Path:
    text = _nonblank(_text(value))
    if "\0" in text:
        raise ValueError("a path cannot contain a NUL character")
    return Path(text).expanduser()


class SipTlsConfig(_Model):
    """SIP over TLS (when tls is in sip.transports): the certificate, and whom to trust."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    port: Int = Field(
        5061,
        ge=1,
        le=65535,
        description="SIP over TLS listening port (1-65535). Default 5061.",
    )
    cert_file: Annotated[Path | None, BeforeValidator(_optional(_file_path))] = Field(
        None,
        description="PEM file with the gateway's certificate (and its intermediates). Required "
        "when tls is in sip.transports. Re-read on SIGHUP.",
    )
    key_file: Annotated[Path | None, BeforeValidator(_optional(_file_path))] = Field(
        None,
        description="PEM file with the private key of cert_file (unencrypted; keep it readable "
        "by the gateway's user only). Required when tls is in sip.transports. Re-read on "
        "SIGHUP; a key that does not match the certificate is refused and the old pair kept.",
    )
    ca_file: Annotated[Path | None, BeforeValidator(_optional(_file_path))] = Field(
        None,
        description="PEM file with the certificate authorities a peer's certificate must chain "
        "to: a client's when verify_peer is true, and always that of a peer the gateway "
        "connects to (the registrar with sip.register.transport tls, a caller whose "
        "connection is gone when the gateway sends BYE or REFER), whose certificate must "
        "also match the name it is reached by. Default none: the system's CAs for the "
        "connections the gateway opens.",
    )
    verify_peer: bool = Field(
        False,
        description="Mutual TLS: a peer must present a certificate that chains to ca_file (and "
        "matches allowed_names when set); else the connection is closed and logged "
        "(sip.tls_refused). Default false: any peer sip.allow_from admits may connect.",
    )
    allowed_names: list[Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)]] = Field(
        default_factory=list,
        description="With verify_peer: names a peer certificate must carry, as a DNS or "
        "IP subjectAltName or as its subject CN (exact match, case-insensitive; no "
        "wildcards). Default [] = any certificate from ca_file.",
    )
    handshake_timeout_s: Float = Field(
        10.0,
        gt=0,
        le=600,
        description="A TLS handshake not complete within this many seconds is aborted and "
        "the connection closed. Default 10.",
    )

    @model_validator(mode="after")
    def _peer_check_needs_ca(self) -> "SipTlsConfig":
        if self.verify_peer and self.ca_file is None:
            raise ValueError("verify_peer: true needs ca_file (the CAs peers must chain to)")
        if self.allowed_names and not self.verify_peer:
            raise ValueError("allowed_names is only checked with verify_peer: true")
        return self


class SipSessionTimersConfig(_Model):
    """Session timers (RFC 4028): a call whose far end has vanished is ended, and a trunk
    that expects refreshes gets them, so long calls are not dropped after 15-30 minutes."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    enabled: bool = Field(
        True,
        description="Take part in session timers when the caller asks for them (Session-Expires "
        "or Supported: timer in its INVITE): refresh, or watch the caller's refreshes and hang "
        "up (BYE, end reason session_timer_expired) when they stop. false = ignore them and "
        "never answer 422. Default true.",
    )
    expires_s: Int = Field(
        1800,
        ge=1,
        description="The session interval we ask for when the caller supports timers but names "
        "no interval (seconds); the caller's Session-Expires, when given, is used as it is. "
        "Default 1800.",
    )
    min_se_s: Int = Field(
        90,
        ge=1,
        description="The shortest session interval we accept (seconds): an INVITE asking for "
        "less is answered 422 Session Interval Too Small with this value in Min-SE. RFC 4028 "
        "says at least 90; lower values are for tests. Default 90.",
    )
    refresher: Annotated[Literal["uac", "uas"], _choice("uac", "uas")] = Field(
        "uas",
        description="Who refreshes when the caller leaves it to us: uas = the gateway (UPDATE "
        "when the caller allows it, else a re-INVITE with the same SDP, every half interval), "
        "uac = the caller (the gateway hangs up when its refreshes stop). A caller that names "
        "the refresher is obeyed. Default uas.",
    )

    @model_validator(mode="after")
    def _expires_at_least_min(self) -> "SipSessionTimersConfig":
        if self.expires_s < self.min_se_s:
            raise ValueError(
                f"expires_s ({self.expires_s}) must be at least min_se_s ({self.min_se_s})"
            )
        return self


class SipConfig(_Model):
    """SIP signalling: where the gateway listens and whom it accepts calls from."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    bind: Annotated[str, BeforeValidator(_parse_ip)] = Field(
        "0.0.0.0",
        description="Local IP address the SIP listener binds to: 0.0.0.0 = every IPv4 "
        "interface, :: = every IPv6 interface, or one address of this host. Default 0.0.0.0.",
    )
    port: Int = Field(
        5060,
        ge=1,
        le=65535,
        description="SIP listening port of udp and tcp (1-65535; tls listens on "
        "sip.tls.port). Default 5060.",
    )
    transports: Annotated[
        list[Annotated[Literal["udp", "tcp", "tls"], _choice("udp", "tcp", "tls")]],
        _unique_nonempty("transport"),
    ] = Field(
        default_factory=lambda: ["udp"],
        description="SIP transports to listen on: udp, tcp, tls, or several of them (udp and "
        "tcp on sip.port, tls on sip.tls.port). Default [udp].",
    )
    advertise_address: Annotated[str | None, BeforeValidator(_optional(_parse_host))] = Field(
        None,
        description="IP address or host name written in Contact, Via and the SDP c= line, "
        "e.g. the public address when the gateway sits behind NAT. Default none = the "
        "address of the local socket that carries the call.",
    )
    allow_from: list[NetworkEntry] = Field(
        default_factory=lambda: [
            ipaddress.ip_network(n)
            for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
        ],
        description="Source addresses or networks (CIDR) allowed to send SIP requests, checked "
        "on the packet's source before it is parsed: a request from anywhere else is answered "
        "403 Forbidden once (never retransmitted, no call record) or dropped, as "
        "sip.reject_unknown says, and a TCP connection from there is closed at accept. Use "
        "0.0.0.0/0 and ::/0 to accept any source. Default: loopback and the private ranges "
        "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16.",
    )
    reject_unknown: Annotated[Literal["respond", "drop"], _choice("respond", "drop")] = Field(
        "respond",
        description="What a source outside sip.allow_from gets: respond = one 403 Forbidden; "
        "drop = nothing at all, so scanners cannot tell a SIP server listens. Default respond.",
    )
    user_agent: Annotated[str, BeforeValidator(_text)] = Field(
        "sip-realtime-gateway",
        max_length=100,
        pattern=r"^[\x20-\x7e]*$",
        description="The User-Agent header of every message the gateway sends; empty = no "
        "header. No version number by default, so a scanner learns nothing it could look up. "
        "Default sip-realtime-gateway.",
    )
    tcp: SipTcpConfig = Field(
        default_factory=SipTcpConfig,
        description="Limits of the TCP listener (when tcp is in sip.transports); they apply "
        "to the TLS listener too.",
    )
    tls: SipTlsConfig = Field(
        default_factory=SipTlsConfig,
        description="SIP over TLS (when tls is in sip.transports): port, certificate, mutual TLS.",
    )
    session_timers: SipSessionTimersConfig = Field(
        default_factory=SipSessionTimersConfig,
        description="Session timers (RFC 4028): refreshes, and a BYE when the caller's stop.",
    )
    max_calls: Int = Field(
        100,
        ge=1,
        description="Maximum number of simultaneous calls; INVITEs beyond it get 503 Service "
        "Unavailable with Retry-After, and OPTIONS answers 503 so a dispatcher sends calls "
        "elsewhere. Default 100.",
    )
    auth: SipAuthConfig | None = Field(
        None,
        description="Digest authentication of inbound INVITEs. Default none: calls are "
        "admitted by sip.allow_from alone.",
    )
    registration: SipRegisterConfig | None = Field(
        None,
        alias="register",
        description="Register to a PBX as an extension and take the calls it sends there. "
        "Default none: the PBX routes calls to this gateway's address (trunk mode).",
    )

    @model_validator(mode="after")
    def _tls_has_certificate(self) -> "SipConfig":
        if "tls" in self.transports and (self.tls.cert_file is None or self.tls.key_file is None):
            raise ValueError("tls in sip.transports needs sip.tls.cert_file and sip.tls.key_file")
        registration = self.registration
        if registration is not None and registration.transport not in self.transports:
            raise ValueError(
                f"sip.register.transport {registration.transport} needs "
                f"{registration.transport} in sip.transports"
            )
        return self

    @field_validator("allow_from", mode="after")
    @classmethod
    def _allow_from_not_empty(cls, value: list[IPNetwork]) -> list[IPNetwork]:
        if not value:
            raise ValueError(
                "an empty list would refuse every call; list the PBX addresses or networks "
                "(use 0.0.0.0/0 and ::/0 to accept calls from anywhere)"
            )
        return value


_SRTP_SUITES = Literal[
    "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM"
]


def _srtp_mode(value: object) -> object:
    """YAML 1.1 reads a bare ``off`` as false: take it as the word it was."""
    if value is False:
        return "off"
    if isinstance(value, str):
        norm = value.strip().lower()
        if norm in ("off", "optional", "required"):
            return norm
    raise ValueError(f"{value!r} is not accepted; use off, optional or required")


class MediaConfig(_Model):
    """RTP media: the UDP port range and the G.711 codecs."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    rtp_port_min: Int = Field(
        10000,
        ge=1024,
        le=65535,
        description="Lowest local UDP port used for RTP audio (1024-65535). Open "
        "rtp_port_min-rtp_port_max in the firewall. Default 10000.",
    )
    rtp_port_max: Int = Field(
        20000,
        ge=1024,
        le=65535,
        description="Highest local UDP port used for RTP audio (1024-65535, greater than "
        "rtp_port_min). Default 20000.",
    )
    codecs: Annotated[
        list[Annotated[Literal["PCMU", "PCMA"], _choice("PCMU", "PCMA", upper=True)]],
        _unique_nonempty("codec"),
    ] = Field(
        default_factory=lambda: ["PCMU", "PCMA"],
        description="G.711 codecs the gateway accepts, in its order of preference: PCMU "
        "(mu-law, North America/Japan) and PCMA (A-law, most other countries). A call "
        "offering none of them is rejected with 488. Default [PCMU, PCMA].",
    )
    rtp_timeout_s: Float = Field(
        30.0,
        ge=0,
        description="Hang up (BYE, end reason rtp_timeout) when no RTP has come from the "
        "caller for this many seconds, like Asterisk's rtptimeout: the PBX or the network "
        "lost the call without a BYE. Suspended while the caller holds the call (sendonly or "
        "inactive), counted again from the resume. 0 turns it off. Default 30.",
    )
    hold_timeout_s: Float = Field(
        3600.0,
        gt=0,
        le=86400,
        description="Hang up (BYE, end reason hold_timeout) when the caller has kept the call "
        "on hold (sendonly, inactive or c=0.0.0.0) for this many seconds without resuming: "
        "a held call keeps its call slot and its Realtime session, and the RTP timeout does "
        "not run while it is held. A resume starts the count again at the next hold. More "
        "than 0, at most 86400. Default 3600 (1 hour).",
    )
    strict_rtp: bool = Field(
        True,
        description="Hear RTP only from the caller, like Asterisk's strictrtp: packets from the "
        "address and port in the caller's SDP are taken at once; any other source (a NAT "
        "that rewrote the port) only after rtp_learn_packets consecutive valid RTP packets "
        "(one SSRC, sequence numbers in a row, the negotiated audio or telephone-event "
        "payload type), and only when the source heard so far has sent nothing for 1 s (or "
        "never sent). Everything else is dropped and counted (rtp.stats foreign_source, "
        "metric sipgw_rtp_packets_total kind foreign_source), and our audio goes to the "
        "accepted source only. false = the old symmetric latching: "
        "the first valid RTP packet from any address takes the call's media, which anyone "
        "who can reach the RTP port can race. Junk never latches either way. Default true.",
    )
    rtp_learn_packets: Int = Field(
        4,
        ge=2,
        le=50,
        description="With strict_rtp: how many consecutive valid RTP packets (20 ms each, "
        "dropped while they count) a source other than the SDP's address must send before "
        "the call hears it and sends to it (2-50). Default 4, Asterisk's probation.",
    )
    allow_to: list[NetworkEntry] | None = Field(
        None,
        description="Networks the gateway may send RTP to. The c= address of a caller's SDP "
        "(in the INVITE, a re-INVITE or the ACK's late answer) must lie in one of them, else "
        "the offer gets 488 Not Acceptable Here (a re-INVITE's leaves the call as it was, a "
        "late answer ends the call): an admitted peer cannot aim a call's 50 packets a "
        "second at a third party. A source that strict RTP learned from its own packets is "
        "not checked. Default none = the networks of sip.allow_from; list the trunk's media "
        "servers here (CIDR) when they are elsewhere, 0.0.0.0/0 and ::/0 for anywhere.",
    )
    srtp: Annotated[
        Literal["off", "optional", "required"],
        BeforeValidator(_srtp_mode),
    ] = Field(
        "optional",
        description="SRTP with keys in the SDP (SDES, RFC 4568). off: an RTP/SAVP offer gets "
        "488, calls are plain RTP. optional: an RTP/SAVP offer with a=crypto is answered with "
        "SRTP, a plain RTP/AVP offer with plain RTP; our own offers (INVITE without SDP) are "
        "plain. required: a plain RTP/AVP offer gets 488, and our own offers are RTP/SAVP. "
        "Within a call a re-INVITE cannot turn SRTP on or off (488, the call goes on as it "
        "was); one with a new a=crypto key re-keys both directions. Packets failing "
        "authentication or replayed are dropped and counted (rtp.stats srtp_auth_failures, "
        "srtp_replayed; metric sipgw_rtp_packets_total kinds srtp_auth_failed, "
        "srtp_replayed). Default optional.",
    )
    srtp_suites: Annotated[
        list[Annotated[Literal[_SRTP_SUITES], _choice(*_SRTP_SUITES.__args__, upper=True)]],
        _unique_nonempty("crypto suite"),
    ] = Field(
        default_factory=lambda: [
            "AES_CM_128_HMAC_SHA1_80",
            "AEAD_AES_256_GCM",
            "AEAD_AES_128_GCM",
            "AES_CM_128_HMAC_SHA1_32",
        ],
        description="SRTP crypto suites the gateway accepts, in its order of preference "
        "(the first one an offer names is taken, whatever the offer's order): "
        "AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM, "
        "AEAD_AES_256_GCM (RFC 7714; used only where the libsrtp build has them). An offer "
        "naming none of them gets 488. Default [AES_CM_128_HMAC_SHA1_80, AEAD_AES_256_GCM, "
        "AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_32].",
    )
    srtp_over_insecure_signalling: bool = Field(
        False,
        description="Take (and send) SRTP keys over SIP that is not TLS (UDP, TCP). The keys "
        "travel in the SDP, so anyone who can read unencrypted signalling can decrypt the "
        "call: by default an RTP/SAVP offer over UDP or TCP gets 488 and a log line "
        "(call.rejected, reason 'SRTP keys offered over unencrypted signalling'). true only "
        "where the signalling path is private (a VPN, a test). Default false.",
    )
    playback_buffer_s: Float = Field(
        120.0,
        ge=1,
        le=3600,
        description="Most model audio, in seconds, one call holds ahead of what the caller "
        "has heard. The service sends answers faster than real time; audio beyond this is "
        "dropped (log playback.overflow, metric sipgw_playback_dropped_seconds_total), which "
        "bounds memory per call (16 KB per second held). Default 120 (a 4096-token answer "
        "is about 200 s, played while it arrives).",
    )

    @field_validator("rtp_port_max", mode="after")
    @classmethod
    def _range_holds_two_ports(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("rtp_port_min")
        if low is not None and value <= low:
            raise ValueError(
                f"must be greater than media.rtp_port_min ({low}): the range must hold at "
                "least 2 ports"
            )
        return value


class LimitsConfig(_Model):
    """Bounds on every call, so that no call can keep its slot forever."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    max_call_s: Float = Field(
        14400.0,
        gt=0,
        le=604800,
        description="Longest call, in seconds from the answer: then the gateway hangs up "
        "(BYE, end reason max_call_duration), whatever the call is doing. More than 0, at most "
        "604800 (7 days). Default 14400 (4 hours).",
    )


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


class ServerVad(_Model):
    """Turn detection by the server from silence (voice activity detection)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["server_vad"] = Field(
        "server_vad", description="server_vad: the caller's turn ends after a silence."
    )
    threshold: Float = Field(
        0.5,
        ge=0,
        le=1,
        description="Speech detection threshold from 0.0 to 1.0; raise it on noisy lines. "
        "Default 0.5.",
    )
    prefix_padding_ms: Int = Field(
        300,
        ge=0,
        le=10_000,
        description="Audio kept from before the detected start of speech, in milliseconds. "
        "Default 300.",
    )
    silence_duration_ms: Int = Field(
        500,
        ge=0,
        le=10_000,
        description="Silence that ends the caller's turn, in milliseconds; lower answers "
        "faster but may cut in on pauses. Default 500.",
    )
    idle_timeout_ms: Int | None = Field(
        None,
        gt=0,
        description="If the caller says nothing for this many milliseconds after the model "
        "finished speaking, the model prompts them again. Default none = never.",
    )
    create_response: bool = Field(
        True,
        description="Answer automatically when the caller's turn ends. Default true.",
    )
    interrupt_response: bool = Field(
        True,
        description="Stop the model's answer when the caller starts talking over it "
        "(barge-in). Default true.",
    )


class SemanticVad(_Model):
    """Turn detection by the model from what the caller says."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["semantic_vad"] = Field(
        "semantic_vad",
        description="semantic_vad: the model judges from the words whether the caller is done.",
    )
    eagerness: Annotated[
        Literal["low", "medium", "high", "auto"], _choice("low", "medium", "high", "auto")
    ] = Field(
        "auto",
        description="How soon the model takes its turn: low (waits up to 8 s), medium "
        "(4 s), high (2 s) or auto (= medium). Default auto.",
    )
    create_response: bool = Field(
        True,
        description="Answer automatically when the caller's turn ends. Default true.",
    )
    interrupt_response: bool = Field(
        True,
        description="Stop the model's answer when the caller starts talking over it "
        "(barge-in). Default true.",
    )


class ManualTurns(_Model):
    """No automatic turn detection."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: Literal["none"] = Field(
        "none",
        description="none: no automatic turn detection; the gateway ends turns itself.",
    )


TurnDetection = Annotated[ServerVad | SemanticVad | ManualTurns, Field(discriminator="type")]


def _dir_path(value: object) -> Path:
    text = _nonblank(_text(value))
    if "\0" in text:
        raise ValueError("a path cannot contain a NUL character")
    return Path(text).expanduser()


def _language(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(
            "YAML read an unquoted language code (no, on, ...) as true/false; put it in "
            'quotes, e.g. language: "no"'
        )
    code = _text(value).strip().lower()
    if not re.fullmatch(r"[a-z]{2}", code):
        raise ValueError(f"{value!r} is not a two-letter ISO-639-1 code such as en, de or fr")
    return code


def _max_tokens(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() == "inf":
        return "inf"
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_OUTPUT_TOKENS:
        return value
    raise ValueError(
        f"expected a whole number from 1 to {MAX_OUTPUT_TOKENS}, or inf, got "
        f"{value if isinstance(value, int) and not isinstance(value, bool) else _kind(value)}"
    )


class InputTranscriptionConfig(_Model):
    """Transcription of the caller's speech."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    model: Annotated[TranscriptionModel, _choice(*TRANSCRIPTION_MODELS)] = Field(
        "gpt-4o-mini-transcribe",
        description="Transcription model: " + ", ".join(TRANSCRIPTION_MODELS) + " (the "
        "preview protocol knows only " + ", ".join(PREVIEW_TRANSCRIPTION_MODELS) + "). "
        "Default gpt-4o-mini-transcribe.",
    )
    language: Annotated[str | None, BeforeValidator(_language)] = Field(
        None,
        description="The caller's language as a two-letter ISO-639-1 code (en, de, fr, ...); "
        "improves accuracy and latency. Default none = detect automatically.",
    )


class LocalBargeIn(_Model):
    """Local pre-emption: pause the agent the moment the caller's voice is heard here."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    threshold: Float = Field(
        0.6,
        ge=0,
        le=1,
        description="Level that counts as the caller's voice, from 0.0 to 1.0 on the same "
        "scale as the embedded agent's VAD (-70 dBFS + 40 dB x threshold: 0.6 = -46 dBFS). "
        "Default 0.6.",
    )
    min_speech_ms: Int = Field(
        60,
        ge=10,
        le=1000,
        description="How much voice, in milliseconds, pauses the agent; shorter reacts "
        "sooner but a cough or a click pauses it too. Default 60.",
    )
    confirm_ms: Int = Field(
        600,
        ge=50,
        le=5000,
        description="If the service does not report the caller's speech within this many "
        "milliseconds, the agent resumes exactly where it paused. Default 600.",
    )


class EchoSuppression(_Model):
    """Keep the agent from hearing (and being interrupted by) its own voice echoed back."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    echo_loss_db: Float = Field(
        6.0,
        ge=0,
        le=40,
        description="The echo comes back at least this many dB quieter than the agent's "
        "audio (echo return loss; G.168 expects at least 6 dB from a line, a speakerphone "
        "often gives 10-20). While the agent talks, caller audio quieter than the agent's "
        "loudest recent frame minus this is muted; louder audio is the caller talking "
        "over it and passes. Default 6.",
    )
    tail_ms: Int = Field(
        300,
        ge=20,
        le=2000,
        description="How long after the agent's audio its echo can still come back "
        "(acoustic path plus the phone's and network's delay), in milliseconds. "
        "Default 300.",
    )


class RecordsConfig(_Model):
    """What is kept of each call besides the logs."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    transcripts_dir: Annotated[Path | None, BeforeValidator(_optional(_dir_path))] = Field(
        None,
        description="Directory for call transcripts: one JSON-lines file per call (caller "
        "and agent turns, the agent's cut where the caller interrupted, with times). "
        "Created at start if missing; relative paths are from the working directory. "
        "Default none = transcripts only in the log.",
    )
    recordings_dir: Annotated[Path | None, BeforeValidator(_optional(_dir_path))] = Field(
        None,
        description="Directory for call recordings: one stereo WAV per call (caller left, agent "
        "right, as heard: the agent cut where the caller interrupted), for profiles with "
        "recording: true. Created at start if missing. Default none = no recordings.",
    )
    calls_dir: Annotated[Path | None, BeforeValidator(_optional(_dir_path))] = Field(
        None,
        description="Directory for call records: one JSON file per call (times, caller, dialed "
        "number, route, end reason, durations, token usage, tool calls), written whatever "
        "way the call ends. Created at start if missing. Default none = only the log.",
    )


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _tool_name(value: object) -> str:
    if not isinstance(value, str) or not _TOOL_NAME.match(value):
        raise ValueError("a tool name is 1-64 letters, digits, _ or - (the model calls it by it)")
    return value


def _json_schema(value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") != "object":
        raise ValueError("parameters must be a JSON schema with type: object")
    return value


def _http_url(value: object) -> str:
    text = _text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError(f"the URL must not contain a user name or password; {SECRETS_MESSAGE}")
    return text


class WebhookTool(_Model):
    """A function the model may call, answered by an HTTP POST to your service."""

    type: Literal["webhook"] = Field("webhook", description="webhook")
    name: Annotated[str, BeforeValidator(_tool_name)] = Field(
        description="The function name the model calls, e.g. lookup_order."
    )
    description: Annotated[str, BeforeValidator(_text), AfterValidator(_nonblank)] = Field(
        description="When and why the model should call it: the model reads this."
    )
    parameters: Annotated[dict[str, Any], BeforeValidator(_json_schema)] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema (type: object) of the arguments the model passes.",
    )
    url: Annotated[str, BeforeValidator(_http_url)] = Field(
        description="Where the call is POSTed as JSON {tool, arguments, call}; the JSON "
        "response goes back to the model."
    )
    timeout_s: float = Field(
        5.0, gt=0, le=30, description="How long to wait for the response (s). Default 5."
    )
    headers_from_env: dict[str, Annotated[str, BeforeValidator(_parse_env_name)]] = Field(
        default_factory=dict,
        description="HTTP header name -> name of the environment variable holding its value "
        "(e.g. Authorization: CRM_TOKEN), so secrets stay out of the file. With any header "
        "here the url must be https:// (or allow_insecure_http set).",
    )
    allow_private_addresses: bool = Field(
        False,
        description="Let this webhook reach addresses that are not public: loopback "
        "(127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10), private (10.0.0.0/8, "
        "172.16.0.0/12, 192.168.0.0/16, fc00::/7), unspecified, multicast and reserved. When "
        "false such a destination is refused: an IP address of that kind in url is a config "
        "error, and a host name that resolves to one (DNS may be hostile, or change between "
        "lookups) makes the tool answer the model with an error; the gateway connects only "
        "to the addresses it checked. Set true for a service on this host or your own "
        "network. Default false.",
    )
    allow_insecure_http: bool = Field(
        False,
        description="Let a webhook with headers_from_env use an http:// url, sending those "
        "secrets unencrypted over the network. Default false: such a tool is a config error.",
    )

    @model_validator(mode="after")
    def _destination_allowed(self) -> "WebhookTool":
        parts = urlsplit(self.url)
        if parts.scheme == "http" and self.headers_from_env and not self.allow_insecure_http:
            raise ValueError(
                "url: an http:// URL would send the headers_from_env secrets unencrypted; use "
                "https://, or set allow_insecure_http: true for this tool"
            )
        address = ip_address_or_none(parts.hostname or "")
        kind = non_public_kind(address) if address is not None else None
        if kind is not None and not self.allow_private_addresses:
            raise ValueError(
                f"url: {address} is a {kind} address; set allow_private_addresses: true for "
                "this tool if it is meant to reach it"
            )
        return self


class EndCallTool(_Model):
    """Lets the model hang up once its last answer has been heard."""

    type: Literal["end_call"] = Field("end_call", description="end_call")
    description: str = Field(
        "End the phone call. Call it after saying goodbye, when the caller is done.",
        description="What the model is told about the tool.",
    )


class TransferTool(_Model):
    """Lets the model transfer the caller (SIP REFER) to a configured destination."""

    type: Literal["transfer_call"] = Field("transfer_call", description="transfer_call")
    targets: dict[str, str] = Field(
        min_length=1,
        description="Destination name the model chooses -> SIP URI the PBX should call, e.g. "
        "{sales: 'sip:600@pbx.example', support: 'sip:queue-support@pbx.example'}.",
    )
    description: str = Field(
        "Transfer the caller to a human or another department.",
        description="What the model is told about the tool.",
    )


Tool = Annotated[WebhookTool | EndCallTool | TransferTool, Field(discriminator="type")]


class DtmfConfig(_Model):
    """Key presses (RFC 4733 or SIP INFO) handed to the model as text."""

    respond: bool = Field(
        True,
        description="After the caller's keys, ask the model to respond (true), or only put "
        "them in the conversation for its next turn (false). Default true.",
    )
    inter_digit_ms: int = Field(
        1500,
        ge=0,
        le=10_000,
        description="Keys pressed within this many ms of each other go to the model together "
        "as one '[DTMF 1234#]' message; # sends at once. 0 = each key alone. Default 1500.",
    )
    max_digits: int = Field(
        32,
        ge=1,
        le=256,
        description="Longest key entry: one that reaches this many keys goes to the model at "
        "once, so a caller who never pauses cannot build an endless message. Keys faster "
        "than a person presses them (beyond a burst of 20, more than 10 a second) are "
        "dropped and logged (call.dtmf_dropped). Default 32.",
    )


class AgentConfig(_Model):
    """What the voice agent says and how it takes turns."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    instructions: Annotated[str, BeforeValidator(_text)] = Field(
        DEFAULT_INSTRUCTIONS,
        description="Instructions for the model: its role, tone and rules. Default: a phone "
        "assistant that gives short spoken answers in the caller's language.",
    )
    voice: Annotated[Voice, _choice(*VOICES)] = Field(
        "marin",
        description="Voice the model speaks with: alloy, ash, ballad, coral, echo, sage, "
        "shimmer, verse, marin or cedar (marin and cedar exist in the GA protocol only). "
        "Default marin (alloy with realtime.protocol: preview).",
    )
    greeting: str | None = Field(
        None,
        description="When set, the agent speaks first as soon as the call is answered, "
        "following this instruction (e.g. 'Greet the caller and ask how you can help'). "
        "Default none = the agent waits for the caller to speak.",
    )
    turn_detection: TurnDetection = Field(
        default_factory=ServerVad,
        description="How the end of the caller's turn is detected: type server_vad "
        "(silence), semantic_vad (meaning) or none (manual). Default server_vad.",
    )
    input_transcription: InputTranscriptionConfig | None = Field(
        None,
        description="Transcribe what the caller says (for logs and transcripts); {} turns it "
        "on with the defaults. Default none = off.",
    )
    noise_reduction: Annotated[
        NoiseReduction | None,
        BeforeValidator(_optional(_choice(*get_args(NoiseReduction)).func)),
    ] = Field(
        None,
        description="Noise filtering of the caller's audio before turn detection and the "
        "model: near_field (a handset or headset close to the mouth, the usual phone case) "
        "or far_field (a speakerphone or conference room). Default none = off.",
    )
    max_output_tokens: Annotated[int | Literal["inf"], BeforeValidator(_max_tokens)] = Field(
        "inf",
        description=f"Longest answer, in output tokens (1 to {MAX_OUTPUT_TOKENS}; audio takes "
        "about 20 tokens per second of speech), or inf for the model's maximum. Default inf.",
    )
    echo_suppression: EchoSuppression | None = Field(
        None,
        description="Mute the caller's audio while it is only the agent's own voice coming "
        "back (speakerphones, poor hybrids), so the agent does not interrupt itself; {} "
        "turns it on with the defaults. Default none = off.",
    )
    local_barge_in: LocalBargeIn | None = Field(
        None,
        description="Pause the agent as soon as the caller's voice is heard by the gateway, "
        "before the service reports it (100-500 ms sooner); resume if the service does not "
        "confirm. {} turns it on with the defaults. Default none = off.",
    )
    tools: list[Tool] = Field(
        default_factory=list,
        description="Functions the model may call: type webhook (an HTTP POST to your "
        "service), end_call (hang up after the goodbye) or transfer_call (SIP REFER to a "
        "configured target). Default none.",
    )
    dtmf: DtmfConfig = Field(
        default_factory=DtmfConfig,
        description="How the caller's key presses reach the model.",
    )
    recording: bool = Field(
        False,
        description="Record calls of this profile to records.recordings_dir (a stereo WAV of "
        "what was heard). Default false.",
    )

    @field_validator("greeting", mode="after")
    @classmethod
    def _blank_greeting_is_none(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    @field_validator("turn_detection", mode="before")
    @classmethod
    def _turn_detection_type(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(
                "expected a mapping with a type (server_vad, semantic_vad or none); for "
                "manual turns write type: none, or remove the key for the default server_vad"
            )
        if isinstance(value, dict):
            kind = value.get("type", "server_vad")  # the documented default
            if isinstance(kind, str):
                kind = kind.strip().lower()
            value = {**value, "type": kind}
        return value


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


class ServiceConfig(_Model):
    """Running as a service: how a stop (SIGTERM) treats the calls in progress."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    drain_timeout_s: Float = Field(
        60.0,
        ge=0,
        le=3600,
        description="On SIGTERM (systemctl stop/restart) the gateway stops taking calls (503 "
        "to INVITE and OPTIONS) and lets the calls in progress finish for at most this many "
        "seconds, then hangs them up with BYE and exits (0 to 3600; 0 = hang up at once). "
        "A second SIGTERM or Ctrl-C hangs up at once. Default 60.",
    )


class MetricsConfig(_Model):
    """Prometheus metrics and health checks over HTTP."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    enabled: bool = Field(
        True,
        description="Serve /metrics (Prometheus), /healthz (alive) and /readyz (ready for "
        "calls; 503 while starting or draining) over HTTP. Default true.",
    )
    bind: Annotated[str, BeforeValidator(_parse_ip)] = Field(
        "127.0.0.1",
        description="Local IP address of the metrics HTTP listener: 127.0.0.1 (this host "
        "only), 0.0.0.0 (every IPv4 interface) or one address of this host. There is no "
        "authentication: expose it only to your monitoring network. Default 127.0.0.1.",
    )
    port: Int = Field(
        9464,
        ge=1,
        le=65535,
        description="TCP port of the metrics HTTP listener (1-65535); give every gateway "
        "instance on a host its own. Default 9464.",
    )
    debug_state: bool = Field(
        False,
        description="Also serve /debug/state: counts of what the process holds (calls, tasks, "
        "file descriptors, memory, garbage-collector pauses), for leak hunting and soak runs, "
        "answered to loopback clients only. Off (404) unless set: it tells a visitor about "
        "the process and costs a full garbage collection with ?gc=1. Default false.",
    )


class GatewayConfig(_Model):
    """The whole gateway configuration: one YAML file with these sections."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    sip: SipConfig = Field(
        default_factory=SipConfig, description="SIP signalling: listener and call admission."
    )
    media: MediaConfig = Field(
        default_factory=MediaConfig, description="RTP audio: port range and codecs."
    )
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="Bounds on every call: its longest duration."
    )
    realtime: RealtimeConfig = Field(
        default_factory=RealtimeConfig,
        description="The Realtime API endpoint (or the embedded echo agent) and its credentials.",
    )
    agent: AgentConfig = Field(
        default_factory=AgentConfig,
        description="The voice agent: instructions, voice, greeting and turn-taking.",
    )
    records: RecordsConfig = Field(
        default_factory=RecordsConfig,
        description="What is kept of each call besides the logs: transcripts.",
    )
    logging: LoggingConfig = Field(
        default_factory=LoggingConfig, description="Log format and level."
    )
    profiles: dict[str, AgentConfig] = Field(
        default_factory=dict,
        description="Named agent profiles chosen by routes. Each is written like the agent "
        "section and inherits every key it does not set from it. In instructions and greeting, "
        "${caller}, ${caller_name}, ${dialed}, ${to} and ${x_...} (an X- header, e.g. "
        "${x_crm_id} for X-CRM-Id) are replaced with the call's values.",
    )
    routes: list[Route] = Field(
        default_factory=list,
        description="Rules that choose a profile for each call, tried in order: the first "
        "match wins; a call no route matches uses the agent section.",
    )
    service: ServiceConfig = Field(
        default_factory=ServiceConfig, description="Stopping with calls in progress (draining)."
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig,
        description="Prometheus metrics, /healthz and /readyz over HTTP.",
    )

    @model_validator(mode="before")
    @classmethod
    def _profiles_inherit_agent(cls, data: Any) -> Any:
        """A profile is the agent section with the profile's own keys on top."""
        if not isinstance(data, dict):
            return data
        agent, profiles = data.get("agent") or {}, data.get("profiles")
        if not isinstance(profiles, dict) or not isinstance(agent, dict):
            return data
        merged = {
            name: {**agent, **profile} if isinstance(profile, dict) else profile
            for name, profile in profiles.items()
        }
        return {**data, "profiles": merged}

    @model_validator(mode="after")
    def _routes_name_profiles(self) -> "GatewayConfig":
        unknown = [
            f"routes[{i}].profile: no profile named {r.profile!r} (profiles: "
            f"{', '.join(self.profiles) or 'none defined'})"
            for i, r in enumerate(self.routes)
            if r.profile not in self.profiles
        ]
        if unknown:
            raise ValueError("; ".join(unknown))
        return self


# --------------------------------------------------------------------------------------------
# Turning pydantic's errors into 'FILE: dotted.path: reason' lines


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the type that validates the value."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _resolve_loc(loc: Sequence[int | str]) -> tuple[str, type[BaseModel] | None]:
    """Dotted path of a pydantic error location, and the model that holds its last key.

    Discriminated-union tags that pydantic inserts (agent.turn_detection.server_vad.x) are
    dropped, so the path is the one the user wrote (agent.turn_detection.x).
    """
    path = ""
    parent: type[BaseModel] | None = GatewayConfig
    current: Any = GatewayConfig
    for item in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if origin in (Union, types.UnionType):
            members = {m.model_fields["type"].default: m for m in get_args(current) if _is_model(m)}
            if item in members:
                current = members[item]
                continue
            current = None
        if _is_model(current):
            parent = current
            field = _keys(current).get(item) if isinstance(item, str) else None
            path = f"{path}.{item}" if path else str(item)
            current = field.annotation if field is not None else None
        elif origin is list and isinstance(item, int):
            path = f"{path}[{item}]"
            current = get_args(current)[0]
        elif origin is dict:
            path = f"{path}.{item}"
            current = get_args(current)[1]
        else:
            path = f"{path}[{item}]" if isinstance(item, int) else f"{path}.{item}"
            current = None
    return path, parent


def _field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, list[str]]:
    """Every key name in the schema -> the dotted paths where it is valid."""
    found: dict[str, list[str]] = {}
    for name, field in _keys(model).items():
        path = f"{prefix}.{name}" if prefix else name
        found.setdefault(name, []).append(path)
        inner = _unwrap(field.annotation)
        subs = [inner] if _is_model(inner) else [a for a in get_args(inner) if _is_model(a)]
        for sub in subs:
            for key, paths in _field_paths(sub, path).items():
                found.setdefault(key, [])
                found[key] += [p for p in paths if p not in found[key]]
    return found


_ALL_FIELD_PATHS = _field_paths(GatewayConfig)
_TURN_TYPES: tuple[type[BaseModel], ...] = get_args(get_args(TurnDetection)[0])


def _unknown_key_reason(key: object, path: str, parent: type[BaseModel] | None) -> str:
    """Explain a key the schema does not know: a misplaced key, a typo, or a secret."""
    allowed = list(_keys(parent)) if parent is not None else []
    name = str(key)
    what = "section" if parent is GatewayConfig else "key"
    if parent in _TURN_TYPES:
        tag = parent.model_fields["type"].default
        for sibling in _TURN_TYPES:
            fields = list(sibling.model_fields)
            match = [name] if name in fields else difflib.get_close_matches(name, fields, 1, 0.85)
            if sibling is not parent and match and match[0] not in parent.model_fields:
                other = sibling.model_fields["type"].default
                fix = "" if match[0] == name else f"did you mean {match[0]!r}? "
                return f"{fix}{match[0]} is used only with type: {other} (here type is {tag})"
    elsewhere = [p for p in _ALL_FIELD_PATHS.get(name, []) if p != path]
    if elsewhere:
        return (
            f"unknown key here; {name} belongs at {' or '.join(elsewhere)} (check the indentation)"
        )
    typo = difflib.get_close_matches(name, allowed, n=1, cutoff=0.85)
    if typo:
        return f"unknown {what}; did you mean {typo[0]!r}?"
    typo_elsewhere = difflib.get_close_matches(name, list(_ALL_FIELD_PATHS), n=1, cutoff=0.85)
    if typo_elsewhere:
        return f"unknown {what}; did you mean {' or '.join(_ALL_FIELD_PATHS[typo_elsewhere[0]])}?"
    if _is_secret_name(name):
        return SECRETS_MESSAGE
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown {what}; did you mean {close[0]!r}?"
    return f"unknown {what}; the {what}s accepted here are {', '.join(allowed)}"


def _reason(err: Mapping[str, Any], path: str, parent: type[BaseModel] | None) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key_reason(err["loc"][-1] if err["loc"] else "", path, parent)
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return (
            f"expected a mapping (indented 'key: value' lines), got {_kind(err.get('input', ...))}"
        )
    if kind == "union_tag_invalid":
        return f"type {ctx.get('tag')!r} is not accepted; use {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"missing {ctx.get('discriminator', 'type')}"
    if kind == "string_type":
        return f"expected text, got {_kind(err.get('input', ...))}"
    if kind == "list_type":
        return f"expected a list ('- item' lines or [a, b]), got {_kind(err.get('input', ...))}"
    return str(err["msg"])


def _format_errors(exc: ValidationError, source: str) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        path, parent = _resolve_loc(err["loc"])
        reason = _reason(err, path, parent)
        line = f"{source}: {path}: {reason}" if path else f"{source}: {reason}"
        if line not in lines:
            lines.append(line)
    return lines


# --------------------------------------------------------------------------------------------
# YAML


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    reason = f"{where}YAML syntax error: {problem}"
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        reason += f" ({context} at line {context_mark.line + 1})"
    if "'\\t'" in problem or "\t" in problem:
        reason += "; YAML does not allow tabs for indentation, use spaces"
    elif "<block end>" in problem:
        reason += "; check the indentation of this line"
    elif "mapping values are not allowed" in problem:
        reason += "; check the indentation, and quote a value that contains ': '"
    return reason


def _duplicate_keys(node: yaml.Node, path: str = "", seen: set[int] | None = None) -> list[str]:
    """YAML silently keeps the last of two equal keys; a config must not."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return []
    seen.add(id(node))
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            key = key_node.value
            child = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in first:
                problems.append(
                    f"{child}: written twice (lines {first[key]} and {line}); "
                    "YAML would silently keep only the last one"
                )
            else:
                first[key] = line
            problems += _duplicate_keys(value_node, child, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, f"{path}[{index}]", seen)
    return problems


def _read_yaml(text: str, source: str) -> tuple[object, list[str]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        duplicates = [f"{source}: {p}" for p in _duplicate_keys(node)]
        return loader.construct_document(node), duplicates
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: {_yaml_error(exc)}"]) from None
    finally:
        loader.dispose()


# --------------------------------------------------------------------------------------------
# Public API


def parse_config(data: object, source: str = "<config>") -> GatewayConfig:
    """Validate already-parsed config data (None = empty = all defaults).

    Raises ConfigError with every problem, each as 'SOURCE: dotted.path: reason'.
    """
    return _validate(data, source, [])


def _validate(data: object, source: str, earlier: list[str]) -> GatewayConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                *earlier,
                f"{source}: the top level must be a mapping with the sections "
                f"{', '.join(GatewayConfig.model_fields)} (got {_kind(data)})",
            ]
        )
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([*earlier, *_format_errors(exc, source)]) from None
    problems = [*earlier, *(f"{source}: {p}" for p in _combination_problems(config))]
    if problems:
        raise ConfigError(problems)
    return config


def _combination_problems(cfg: GatewayConfig) -> list[str]:
    """Settings that are valid alone but not together, as 'dotted.path: reason' lines."""
    rt = cfg.realtime
    problems = []
    if rt.rollover_margin_s >= rt.max_session_s:
        problems.append(
            f"realtime.rollover_margin_s: {rt.rollover_margin_s:g} must be less than "
            f"realtime.max_session_s ({rt.max_session_s:g})"
        )
    host = "" if rt.embedded else (urlsplit(rt.url).hostname or "").lower()
    secret = {"api_key": "API key", "bearer": "API key", "entra": "Entra ID token"}
    if (
        not rt.embedded
        and urlsplit(rt.url).scheme.lower() == "ws"
        and rt.auth.method in secret
        and not rt.allow_insecure_ws
    ):
        problems.append(
            f"realtime.url: a ws:// URL would send the {secret[rt.auth.method]} unencrypted; "
            "use wss://, or set realtime.allow_insecure_ws: true (auth method none needs no "
            "flag)"
        )
    if host == OPENAI_HOST and rt.auth.method == "api_key":
        problems.append(
            "realtime.auth.method: api.openai.com takes the key as 'Authorization: Bearer'; "
            "write method: bearer (api_key is Azure's api-key header)"
        )
    if host == OPENAI_HOST and rt.protocol == "preview":
        problems.append(
            "realtime.protocol: preview is Azure's preview API; api.openai.com speaks ga "
            "(wss://api.openai.com/v1/realtime)"
        )
    if rt.protocol == "preview" and rt.embedded:
        problems.append(f"realtime.protocol: {EMBEDDED_ECHO} speaks ga; remove protocol: preview")
    if rt.protocol == "preview":
        problems += _preview_problems(cfg.agent, "agent")
        for name, profile in cfg.profiles.items():
            problems += _preview_problems(profile, f"profiles.{name}")
    return problems


def _preview_problems(agent: AgentConfig, path: str) -> list[str]:
    """Agent settings the preview protocol cannot carry; adapts the default voice to it."""
    problems = []
    if agent.voice not in PREVIEW_VOICES:
        if "voice" in agent.model_fields_set:
            problems.append(
                f"{path}.voice: {agent.voice} exists only with realtime.protocol: ga; the "
                f"preview protocol's voices are {_one_of(PREVIEW_VOICES)}"
            )
        else:
            agent.voice = "alloy"
    td = agent.turn_detection
    if isinstance(td, ServerVad) and td.idle_timeout_ms is not None:
        problems.append(
            f"{path}.turn_detection.idle_timeout_ms: exists only with realtime.protocol: ga; "
            "remove it for preview"
        )
    tr = agent.input_transcription
    if tr is not None and tr.model not in PREVIEW_TRANSCRIPTION_MODELS:
        problems.append(
            f"{path}.input_transcription.model: {tr.model} is not available with "
            f"realtime.protocol: preview; use {_one_of(PREVIEW_TRANSCRIPTION_MODELS)}"
        )
    return problems


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a YAML config file.

    Raises ConfigError for a missing or unreadable file, a YAML syntax error (with line and
    column), duplicate keys, a top level that is not a mapping, and every schema error.
    """
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{source}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{source}: is a directory, not a config file"]) from None
    except PermissionError:
        raise ConfigError([f"{source}: cannot read the file: permission denied"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{source}: not UTF-8 text (invalid byte at offset {exc.start})"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the file: {exc.strerror or exc}"]) from None
    data, duplicates = _read_yaml(text, source)
    return _validate(data, source, duplicates)


def _needs_api_key(cfg: GatewayConfig) -> bool:
    return not cfg.realtime.embedded and cfg.realtime.auth.method in ("api_key", "bearer")


def check_environment(cfg: GatewayConfig, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Problems with the environment the config relies on; empty when all is well.

    Never includes a secret value.
    """
    problems: list[str] = []
    if _needs_api_key(cfg):
        name = cfg.realtime.auth.api_key_env
        value = environ.get(name)
        if value is None:
            problems.append(f"realtime.auth.api_key_env: environment variable {name} is not set")
        elif not value.strip():
            problems.append(f"realtime.auth.api_key_env: environment variable {name} is empty")
    for path, name in _sip_password_envs(cfg):
        if not environ.get(name, "").strip():
            problems.append(f"{path}: environment variable {name} is not set or empty")
    return problems


def _sip_password_envs(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """(config path, variable name) of every SIP password the config relies on."""
    found = []
    if cfg.sip.auth is not None:
        for i, user in enumerate(cfg.sip.auth.users):
            found.append((f"sip.auth.users[{i}].password_env", user.password_env))
    if cfg.sip.registration is not None:
        found.append(("sip.register.password_env", cfg.sip.registration.password_env))
    return found


def sip_passwords(
    cfg: GatewayConfig, environ: Mapping[str, str] = os.environ
) -> tuple[dict[str, str], str | None]:
    """The inbound users' passwords by user name, and the registration password.

    Unset variables are left out (check_environment() names them).
    """
    users: dict[str, str] = {}
    if cfg.sip.auth is not None:
        for user in cfg.sip.auth.users:
            if environ.get(user.password_env):
                users[user.username] = environ[user.password_env]
    register = None
    if cfg.sip.registration is not None:
        register = environ.get(cfg.sip.registration.password_env) or None
    return users, register


def api_key(cfg: GatewayConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The API key from the environment variable the config names.

    None when auth is neither api_key nor bearer, when the url is embedded, or when the
    variable is unset or empty (check_environment() reports that case).
    """
    if not _needs_api_key(cfg):
        return None
    value = environ.get(cfg.realtime.auth.api_key_env, "").strip()
    return value or None
