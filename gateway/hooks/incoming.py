"""The decision webhook (``hooks.call_incoming``) as plain functions: the request the gateway
POSTs about a new call, and the answer it gets back, validated into a typed `Decision`.

No I/O here (decide.py is the asyncio shell). The answer comes over the network, so it is
hostile until checked: its size is capped, every field's type is checked (no coercion), a
reject status must be 400-699, a redirect target a plain sip:/sips: URI that cannot inject a
header, a profile one that is configured, a voice one the config accepts, tools exactly what
``agent.tools`` accepts, and variables and metadata are bounded in count and length.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiosipua.header_codec import parse_uri
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..config.tools import Tool
from ..sip.addresses import valid_host

MAX_ANSWER_BYTES = 64 * 1024  # a longer answer is unusable (read no further)
MAX_HEADERS = 32  # headers passed on to the hook, in the INVITE's order
MAX_HEADER_CHARS = 256  # each header value, cut
FORWARDED = ("p-asserted-identity", "diversion", "user-to-user")  # besides every X- header
MAX_ENTRIES = 32  # variables, and metadata keys
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 1000
MAX_METADATA_BYTES = 8 * 1024  # metadata as JSON
MAX_TEXT_CHARS = 20_000  # instructions
MAX_GREETING_CHARS = 2_000
MAX_TARGET_CHARS = 256
MAX_PHRASE_CHARS = 64
DEFAULT_REJECT = 603  # Decline: the callee's side refuses, and the caller should not retry
PHRASES = {
    403: "Forbidden",
    404: "Not Found",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but tab and newline
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # a ${name} that Template can fill
_URI_FORBIDDEN = re.compile(r"[\x00-\x20\x7f<>\"]")
_TOOLS = TypeAdapter(list[Tool])


class UnusableAnswer(ValueError):
    """The hook's answer cannot be followed; the message says why (never a secret)."""


# --- the request ------------------------------------------------------------------------------


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The INVITE's X- headers, P-Asserted-Identity, Diversion and User-to-User (lower-case
    names, first value of each), control characters blanked, each cut short, at most
    `MAX_HEADERS` of them: the caller chose them, the hook's owner reads them."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if len(out) >= MAX_HEADERS:
            break
        key = name.lower()
        if key.startswith("x-") or key in FORWARDED:
            out[key[:MAX_KEY_CHARS]] = _CONTROL.sub(" ", value).strip()[:MAX_HEADER_CHARS]
    return out


def request_body(call_id: str, facts: Mapping[str, str], headers: Mapping[str, str]) -> bytes:
    """The JSON POSTed about a new call: `facts` are call_id's companions (caller,
    caller_name, dialed, to, source, transport), `headers` the INVITE's (see
    `forwarded_headers`)."""
    keys = ("caller", "caller_name", "dialed", "to", "source", "transport")
    body: dict[str, Any] = {"call_id": call_id}
    body.update({k: str(facts.get(k, ""))[:MAX_HEADER_CHARS] for k in keys})
    body["headers"] = forwarded_headers(headers)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# --- the answer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """What a valid answer may name: the configured profiles and the voices the config's
    protocol accepts (the answer is checked against the config the call was taken with)."""

    profiles: frozenset[str]
    voices: frozenset[str]


@dataclass(frozen=True)
class Accept:
    """Go on with the call; the fields given override the profile's (None: as routed)."""

    profile: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # AgentConfig fields
    variables: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    status: int
    reason: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Redirect:
    target: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


Decision = Accept | Reject | Redirect

Scalar = str | int | float | bool | None


class _Answer(BaseModel):
    """The answer's shape; strict: "486" is not 486, 1 is not true."""

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    action: Literal["accept", "reject", "redirect"]
    status: int | None = Field(None, ge=400, le=699)
    reason: str | None = Field(None, max_length=MAX_PHRASE_CHARS)
    target: str | None = Field(None, max_length=MAX_TARGET_CHARS)
    profile: str | None = Field(None, max_length=MAX_KEY_CHARS)
    instructions: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    greeting: str | None = Field(None, max_length=MAX_GREETING_CHARS)
    voice: str | None = Field(None, max_length=MAX_KEY_CHARS)
    variables: dict[str, str] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    tools: list[dict[str, Any]] | None = Field(None, max_length=MAX_ENTRIES)
    record: bool | None = None
    metadata: dict[str, Scalar] = Field(default_factory=dict, max_length=MAX_ENTRIES)


_ONLY_FOR = {
    "reject": ("status", "reason"),
    "redirect": ("target",),
    "accept": ("profile", "instructions", "greeting", "voice", "variables", "tools", "record"),
}


def parse_answer(body: bytes, rules: Rules) -> Decision:
    """The decision in a hook's answer. Raises UnusableAnswer with the first problem."""
    if len(body) > MAX_ANSWER_BYTES:
        raise UnusableAnswer(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UnusableAnswer(f"answer is not JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise UnusableAnswer("answer is not a JSON object")
    try:
        answer = _Answer.model_validate(data)
    except ValidationError as exc:
        raise UnusableAnswer(_first_error(exc)) from None
    _only_fields_of(answer)
    metadata = _metadata(answer.metadata)
    if answer.action == "reject":
        status = answer.status if answer.status is not None else DEFAULT_REJECT
        return Reject(status, _phrase(answer.reason, status), metadata)
    if answer.action == "redirect":
        return Redirect(_target(answer.target), metadata)
    return Accept(answer.profile and _profile(answer.profile, rules), _overrides(answer, rules),
                  _variables(answer.variables), metadata)  # fmt: skip


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in error["loc"]) or "answer"
    return f"{where}: {error['msg']}"[:200]


def _only_fields_of(answer: _Answer) -> None:
    """A field that belongs to another action is an error, so a mistake shows at once."""
    for action, names in _ONLY_FOR.items():
        if action == answer.action:
            continue
        for name in names:
            if name in answer.model_fields_set and getattr(answer, name) not in (None, {}, []):
                raise UnusableAnswer(f"{name}: not used with action {answer.action}")


def _phrase(reason: str | None, status: int) -> str:
    if reason is None or not reason.strip():
        return PHRASES.get(status, "Declined" if status >= 600 else "Request Failed")
    if _CONTROL.search(reason):
        raise UnusableAnswer("reason: control characters are not allowed in a reason phrase")
    return reason.strip()


def _target(target: str | None) -> str:
    """A SIP URI for a Contact header: sip: or sips:, a valid host, nothing that could end
    the header or the angle brackets around it (CR, LF, <, >, quotes, spaces)."""
    if target is None:
        raise UnusableAnswer("target: a redirect needs a target (sip: or sips: URI)")
    if _URI_FORBIDDEN.search(target) or not target.isascii():
        raise UnusableAnswer("target: spaces, control characters, <, > and quotes not allowed")
    if not target.lower().startswith(("sip:", "sips:")):
        raise UnusableAnswer("target: must be a sip: or sips: URI")
    try:
        uri = parse_uri(target)
    except (ValueError, IndexError):
        raise UnusableAnswer("target: not a SIP URI") from None
    if not valid_host(uri.host or "") or not (uri.port is None or 0 < uri.port < 65536):
        raise UnusableAnswer("target: not a valid host or port")
    return target


def _profile(name: str, rules: Rules) -> str:
    if name not in rules.profiles:
        raise UnusableAnswer(f"profile: {name[:MAX_KEY_CHARS]!r} is not a configured profile")
    return name


def _overrides(answer: _Answer, rules: Rules) -> dict[str, Any]:
    """The AgentConfig fields the answer sets, each checked as the config would."""
    out: dict[str, Any] = {}
    for name in ("instructions", "greeting"):
        text = getattr(answer, name)
        if text is not None:
            if _TEXT_CONTROL.search(text):
                raise UnusableAnswer(f"{name}: control characters are not allowed")
            out[name] = text if text.strip() or name == "instructions" else None
    if answer.voice is not None:
        voice = answer.voice.strip().lower()
        if voice not in rules.voices:
            raise UnusableAnswer(f"voice: {answer.voice[:MAX_KEY_CHARS]!r} is not accepted")
        out["voice"] = voice
    if answer.tools is not None:
        try:
            out["tools"] = _TOOLS.validate_python(answer.tools)
        except ValidationError as exc:
            raise UnusableAnswer("tools." + _first_error(exc)) from None
    if answer.record is not None:
        out["recording"] = answer.record
    return out


def _variables(variables: Mapping[str, str]) -> dict[str, str]:
    """Strings only, names that ${...} can hold, values bounded and without control
    characters (they go into the model's instructions)."""
    for key, value in variables.items():
        _check_key("variables", key)
        if len(value) > MAX_VALUE_CHARS or _TEXT_CONTROL.search(value):
            raise UnusableAnswer(
                f"variables.{key}: at most {MAX_VALUE_CHARS} characters, no control characters"
            )
    return dict(variables)


def _metadata(metadata: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """Flat and bounded: keys like variables', values JSON scalars (finite numbers, strings
    of bounded length), the whole at most `MAX_METADATA_BYTES` as JSON."""
    for key, value in metadata.items():
        _check_key("metadata", key)
        if isinstance(value, float) and not math.isfinite(value):
            raise UnusableAnswer(f"metadata.{key}: not a finite number")
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            raise UnusableAnswer(f"metadata.{key}: at most {MAX_VALUE_CHARS} characters")
    if len(json.dumps(metadata).encode()) > MAX_METADATA_BYTES:
        raise UnusableAnswer(f"metadata: larger than {MAX_METADATA_BYTES} bytes as JSON")
    return dict(metadata)


def _check_key(where: str, key: str) -> None:
    if not _KEY.match(key):
        raise UnusableAnswer(
            f"{where}: key {key[:MAX_KEY_CHARS]!r} must be 1-64 letters, digits or _ "
            "(not starting with a digit)"
        )


def rules_for(profiles: Iterable[str], voices: Iterable[str]) -> Rules:
    """Rules from the config's profile names (and "default", the agent section) and voices."""
    return Rules(frozenset({"default", *profiles}), frozenset(voices))
