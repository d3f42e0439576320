"""What the embedded agent accepts from a client, checked as the service checks it (sans-I/O).

Every check raises :class:`InvalidRequest` with the service's message, ``param`` and ``code``;
the session turns that into an ``error`` event. ``merge_session`` applies a partial
``session.update`` (GA shape) and applies nothing when any part of it is invalid.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import secrets
from collections.abc import Callable
from typing import Any

from .audio import RATE, g711_codec

__all__ = [
    "MAX_APPEND_CHARS",
    "InvalidRequest",
    "append_audio",
    "check_item",
    "check_keys",
    "default_session",
    "merge_session",
    "need_dict",
    "new_id",
    "parse_event",
    "response_settings",
]

MAX_APPEND_CHARS = 15 * 1024 * 1024  # the service's limit per input_audio_buffer.append
DEFAULT_SERVER_VAD: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
DEFAULT_SEMANTIC_VAD: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
# semantic_vad is played as server_vad; eagerness only changes how long a pause ends a turn.
SEMANTIC_SILENCE_MS = {"low": 800, "medium": 500, "auto": 500, "high": 250}

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")

SESSION_KEYS = frozenset(
    {
        "type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
        "max_output_tokens", "truncation", "tracing", "prompt", "include", "reasoning",
        "parallel_tool_calls",
    }
)  # fmt: skip
SERVER_VAD_KEYS = frozenset(DEFAULT_SERVER_VAD)
SEMANTIC_VAD_KEYS = frozenset(DEFAULT_SEMANTIC_VAD)
# The content part types each message role may carry.
ITEM_CONTENT = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text",),
}

_ids = itertools.count(1)
_id_salt = secrets.token_hex(4)


def new_id(prefix: str) -> str:
    """A unique id like the service's (``event_…``, ``item_…``, ``resp_…``, ``sess_…``)."""
    return f"{prefix}_{_id_salt}{secrets.token_hex(5)}{next(_ids):x}"


class InvalidRequest(Exception):
    """A client event the service would refuse; becomes an ``error`` event."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = "invalid_value",
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.type = type_


def missing(path: str) -> InvalidRequest:
    """The service's refusal of a required parameter left out."""
    return InvalidRequest(
        f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter"
    )


def check_keys(d: dict[str, Any], allowed: frozenset[str] | set[str], path: str) -> None:
    """Refuse the first key not in ``allowed`` (``unknown_parameter``, as the service does)."""
    for key in d:
        if key not in allowed:
            raise InvalidRequest(
                f"Unknown parameter: '{path}.{key}'.",
                param=f"{path}.{key}",
                code="unknown_parameter",
            )


def need_dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"Invalid type for '{path}': expected an object, but got {type(value).__name__}.",
            param=path,
            code="invalid_type",
        )
    return value


def audio_format(value: Any, path: str) -> dict[str, Any]:
    """An audio format object, normalised (``audio/pcm`` always names its rate)."""
    d = need_dict(value, path)
    typ = d.get("type")
    if typ is None:
        raise missing(f"{path}.type")
    if typ not in FORMATS:
        raise InvalidRequest(
            f"Invalid value: '{typ}'. Supported values are: 'audio/pcm', 'audio/pcmu' and "
            "'audio/pcma'.",
            param=f"{path}.type",
        )
    if typ == "audio/pcm":
        check_keys(d, {"type", "rate"}, path)
        rate = d.get("rate", RATE)
        if rate != RATE or isinstance(rate, bool):
            raise InvalidRequest(
                f"Invalid value: {rate!r}. Supported values are: 24000.", param=f"{path}.rate"
            )
        return {"type": typ, "rate": RATE}
    check_keys(d, {"type"}, path)
    try:
        g711_codec(typ)
    except ImportError as exc:  # the G.711 module is not there in this build
        raise InvalidRequest(
            f"'{typ}' is not available in this build of the embedded agent.",
            param=f"{path}.type",
            code="unsupported_format",
            type_="server_error",
        ) from exc
    return {"type": typ}


def number(d: dict[str, Any], key: str, path: str, lo: float, hi: float, *, integer: bool) -> None:
    if key not in d or (d[key] is None and key == "idle_timeout_ms"):
        return
    v = d[key]
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if not ok or isinstance(v, bool):
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(
            f"Invalid type for '{path}.{key}': expected {kind}, but got {type(v).__name__}.",
            param=f"{path}.{key}",
            code="invalid_type",
        )
    if not lo <= v <= hi:
        raise InvalidRequest(
            f"Invalid '{path}.{key}': expected a value between {lo:g} and {hi:g}, but got {v}.",
            param=f"{path}.{key}",
        )


def _bool(d: dict[str, Any], key: str, path: str) -> None:
    if key in d and not isinstance(d[key], bool):
        raise InvalidRequest(
            f"Invalid type for '{path}.{key}': expected a boolean.",
            param=f"{path}.{key}",
            code="invalid_type",
        )


def turn_detection(value: Any, current: dict[str, Any] | None, path: str) -> dict[str, Any] | None:
    """The new turn detection: a partial update of the current one when the type is the same,
    else the type's defaults with the given keys; ``None`` turns it off."""
    if value is None:
        return None
    d = need_dict(value, path)
    typ = d.get("type")
    if typ == "server_vad":
        check_keys(d, SERVER_VAD_KEYS, path)
        number(d, "threshold", path, 0.0, 1.0, integer=False)
        number(d, "prefix_padding_ms", path, 0, 10_000, integer=True)
        number(d, "silence_duration_ms", path, 0, 10_000, integer=True)
        number(d, "idle_timeout_ms", path, 5_000, 30_000, integer=True)
        base = DEFAULT_SERVER_VAD
    elif typ == "semantic_vad":
        check_keys(d, SEMANTIC_VAD_KEYS, path)
        if "eagerness" in d and d["eagerness"] not in SEMANTIC_SILENCE_MS:
            raise InvalidRequest(
                f"Invalid value: '{d['eagerness']}'. Supported values are: 'low', 'medium', "
                "'high' and 'auto'.",
                param=f"{path}.eagerness",
            )
        base = DEFAULT_SEMANTIC_VAD
    elif typ is None:
        raise missing(f"{path}.type")
    else:
        raise InvalidRequest(
            f"Invalid value: '{typ}'. Supported values are: 'server_vad' and 'semantic_vad'.",
            param=f"{path}.type",
        )
    _bool(d, "create_response", path)
    _bool(d, "interrupt_response", path)
    merged = dict(current) if current is not None and current.get("type") == typ else dict(base)
    merged.update(d)
    return merged


def optional_dict(value: Any, path: str, types: tuple[str, ...] | None = None) -> Any:
    if value is None:
        return None
    d = need_dict(value, path)
    if types is not None and d.get("type") not in types:
        raise InvalidRequest(
            f"Invalid value: {d.get('type')!r}. Supported values are: "
            + ", ".join(f"'{t}'" for t in types)
            + ".",
            param=f"{path}.type",
        )
    return copy.deepcopy(d)


def voice(value: Any, path: str) -> Any:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str) and set(value) == {"id"}:
        return dict(value)
    raise InvalidRequest(
        "Invalid value for voice: use one of " + ", ".join(VOICES) + " or {'id': 'voice_…'}.",
        param=path,
    )


def modalities(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or len(value) != 1 or value[0] not in ("audio", "text"):
        raise InvalidRequest(
            "Invalid value: output_modalities must be ['audio'] or ['text'].", param=path
        )
    return list(value)


def _max_tokens(value: Any, path: str) -> Any:
    if value == "inf" or (
        isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4096
    ):
        return value
    raise InvalidRequest(
        f"Invalid value: {value!r}. Expected an integer between 1 and 4096, or 'inf'.", param=path
    )


def metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) > 16
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise InvalidRequest(
            "Invalid 'response.metadata': expected at most 16 string keys with string values.",
            param="response.metadata",
        )
    return dict(value)


# --- session.update, one function per key ---------------------------------------------------
# Each gets (value, path, current session, new session, voice_locked) and writes into new.

_Field = Callable[[Any, str, dict[str, Any], dict[str, Any], bool], None]


def _instructions(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(
            "Invalid type for 'session.instructions'.", param=path, code="invalid_type"
        )
    new["instructions"] = value or ""


def _model(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRequest("Invalid value for 'session.model'.", param=path)
    if value != current.get("model") and locked:
        raise InvalidRequest(
            "Cannot update the model once the model has produced audio.",
            param=path,
            code="cannot_update_model",
        )
    new["model"] = value


def _output_modalities(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    new["output_modalities"] = modalities(value, path)


def _max_output_tokens(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    new["max_output_tokens"] = _max_tokens(value, path)


def _tools(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    if not isinstance(value, list):
        raise InvalidRequest(
            "Invalid type for 'session.tools': expected an array.", param=path, code="invalid_type"
        )
    for i, tool in enumerate(value):
        t = need_dict(tool, f"{path}[{i}]")
        if t.get("type") not in ("function", "mcp"):
            raise InvalidRequest(
                f"Invalid value: {t.get('type')!r}. Supported values are: 'function' and 'mcp'.",
                param=f"{path}[{i}].type",
            )
        if t["type"] == "function" and not isinstance(t.get("name"), str):
            raise missing(f"{path}[{i}].name")
    new["tools"] = copy.deepcopy(value)


def _tool_choice(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    if not isinstance(value, str):
        new["tool_choice"] = optional_dict(value, path, ("function", "mcp"))
    elif value in ("none", "auto", "required"):
        new["tool_choice"] = value
    else:
        raise InvalidRequest(
            f"Invalid value: '{value}'. Supported values are: 'none', 'auto' and 'required'.",
            param=path,
        )


def _truncation(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    if value in ("auto", "disabled"):
        new["truncation"] = value
    else:
        new["truncation"] = optional_dict(value, path, ("retention_ratio",))


def _audio_input(value: Any, path: str, current: dict, new: dict) -> None:
    inp = need_dict(value, path)
    check_keys(inp, {"format", "noise_reduction", "transcription", "turn_detection"}, path)
    target = new["audio"]["input"]
    if "format" in inp:
        target["format"] = audio_format(inp["format"], f"{path}.format")
    if "turn_detection" in inp:
        target["turn_detection"] = turn_detection(
            inp["turn_detection"],
            current["audio"]["input"]["turn_detection"],
            f"{path}.turn_detection",
        )
    if "transcription" in inp:
        target["transcription"] = optional_dict(inp["transcription"], f"{path}.transcription")
    if "noise_reduction" in inp:
        target["noise_reduction"] = optional_dict(
            inp["noise_reduction"], f"{path}.noise_reduction", ("near_field", "far_field")
        )


def _audio_output(value: Any, path: str, new: dict, locked: bool) -> None:
    out = need_dict(value, path)
    check_keys(out, {"format", "voice", "speed"}, path)
    target = new["audio"]["output"]
    if "format" in out:
        target["format"] = audio_format(out["format"], f"{path}.format")
    if "voice" in out:
        chosen = voice(out["voice"], f"{path}.voice")
        if chosen != target.get("voice") and locked:
            raise InvalidRequest(
                "Cannot update a conversation's voice if assistant audio is present.",
                param=f"{path}.voice",
                code="cannot_update_voice",
            )
        target["voice"] = chosen
    if "speed" in out:
        number(out, "speed", path, 0.25, 1.5, integer=False)
        target["speed"] = out["speed"]


def _audio(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    audio = need_dict(value, path)
    check_keys(audio, {"input", "output"}, path)
    if "input" in audio:
        _audio_input(audio["input"], f"{path}.input", current, new)
    if "output" in audio:
        _audio_output(audio["output"], f"{path}.output", new, locked)


def _parallel_tool_calls(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(
            "Invalid type for 'session.parallel_tool_calls'.", param=path, code="invalid_type"
        )
    new["parallel_tool_calls"] = value


def _include(value: Any, path: str, current: dict, new: dict, locked: bool) -> None:
    if value is not None and (
        not isinstance(value, list)
        or any(v != "item.input_audio_transcription.logprobs" for v in value)
    ):
        raise InvalidRequest("Invalid value for 'session.include'.", param=path)
    new["include"] = value


_FIELDS: dict[str, _Field] = {
    "instructions": _instructions,
    "model": _model,
    "output_modalities": _output_modalities,
    "max_output_tokens": _max_output_tokens,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "truncation": _truncation,
    "audio": _audio,
    "parallel_tool_calls": _parallel_tool_calls,
    "include": _include,
}


def merge_session(current: dict[str, Any], update: Any, *, voice_locked: bool) -> dict[str, Any]:
    """Apply a partial ``session.update`` to the effective session; raise :class:`InvalidRequest`.

    Only fields present change; ``null`` clears turn_detection, transcription and noise_reduction.
    Nothing is applied when anything is invalid.
    """
    upd = need_dict(update, "session")
    if "type" not in upd:
        raise missing("session.type")
    if upd["type"] != "realtime":
        raise InvalidRequest(
            f"Invalid value: {upd['type']!r}. The embedded agent only runs 'realtime' sessions.",
            param="session.type",
        )
    check_keys(upd, SESSION_KEYS, "session")
    new = copy.deepcopy(current)
    for key, value in upd.items():
        if key == "type":
            continue
        field = _FIELDS.get(key)
        if field is None:  # tracing, prompt, reasoning: kept as given
            new[key] = copy.deepcopy(value)
        else:
            field(value, f"session.{key}", current, new, voice_locked)
    return new


def default_session(model: str, expires_at: float) -> dict[str, Any]:
    """The effective session a connection starts with (what ``session.created`` carries)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "expires_at": expires_at,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(DEFAULT_SERVER_VAD),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "voice": "marin",
                "speed": 1.0,
            },
        },
    }


# --- other client events --------------------------------------------------------------------


def parse_event(message: str | bytes) -> dict[str, Any]:
    """A client frame as an event object, or the service's ``invalid_json`` refusal."""
    if isinstance(message, bytes):
        raise InvalidRequest(
            "Binary frames are not supported: send each event as a JSON text frame.",
            code="invalid_json",
        )
    try:
        event = json.loads(message)
    except ValueError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON of your event ({exc.msg} at position {exc.pos}).",
            code="invalid_json",
        ) from exc
    if not isinstance(event, dict):
        raise InvalidRequest("An event must be a JSON object.", code="invalid_json")
    return event


def append_audio(event: dict[str, Any]) -> bytes:
    """The bytes of an ``input_audio_buffer.append`` (base64, at most 15 MiB of it)."""
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise InvalidRequest(
            "Missing required parameter: 'audio' (base64-encoded audio bytes).",
            param="audio",
            code="missing_required_parameter",
        )
    if len(audio) > MAX_APPEND_CHARS:
        raise InvalidRequest("Invalid 'audio': an append may carry at most 15 MiB.", param="audio")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            "Invalid 'audio'. Expected base64-encoded audio bytes.", param="audio"
        ) from exc


def check_item(item: dict[str, Any]) -> None:
    """A ``conversation.item.create`` item's type, role and content part types."""
    typ = item.get("type")
    if typ == "message":
        role = item.get("role")
        if role not in ITEM_CONTENT:
            raise InvalidRequest(
                f"Invalid value: {role!r}. Supported values are: 'user', 'assistant' and 'system'.",
                param="item.role",
            )
        content = item.get("content")
        if not isinstance(content, list):
            raise missing("item.content")
        for i, part in enumerate(content):
            ptype = part.get("type") if isinstance(part, dict) else None
            if ptype not in ITEM_CONTENT[role]:
                raise InvalidRequest(
                    f"Invalid value: {ptype!r} for a {role} message. Supported values are: "
                    + ", ".join(f"'{t}'" for t in ITEM_CONTENT[role])
                    + ".",
                    param=f"item.content[{i}].type",
                )
    elif typ == "function_call_output":
        if not isinstance(item.get("call_id"), str) or not isinstance(item.get("output"), str):
            raise InvalidRequest(
                "A function_call_output item needs 'call_id' and 'output' (strings).",
                param="item.output",
                code="missing_required_parameter",
            )
    elif typ == "function_call":
        if not isinstance(item.get("name"), str) or not isinstance(item.get("arguments"), str):
            raise InvalidRequest(
                "A function_call item needs 'name' and 'arguments' (strings).",
                param="item.arguments",
                code="missing_required_parameter",
            )
    else:
        raise InvalidRequest(
            f"Invalid value: {typ!r}. Supported values are: 'message', 'function_call' and "
            "'function_call_output'.",
            param="item.type",
        )


def response_settings(
    params: dict[str, Any], config: dict[str, Any]
) -> tuple[str, dict[str, Any], Any]:
    """A ``response.create``'s modality, output format and voice: the session's, overridden."""
    modality = config["output_modalities"][0]
    if "output_modalities" in params:
        modality = modalities(params["output_modalities"], "response.output_modalities")[0]
    fmt = config["audio"]["output"]["format"]
    chosen = config["audio"]["output"]["voice"]
    out = need_dict(params.get("audio") or {}, "response.audio").get("output")
    if out is not None:
        out = need_dict(out, "response.audio.output")
        if "format" in out:
            fmt = audio_format(out["format"], "response.audio.output.format")
        if "voice" in out:
            chosen = voice(out["voice"], "response.audio.output.voice")
    return modality, fmt, chosen
