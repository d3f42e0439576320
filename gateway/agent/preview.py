"""The preview (beta) dialect for the embedded agent, as a translation at its edges (sans-I/O).

The embedded agent runs GA internally. A connection that comes in the preview way (Azure's
``/openai/realtime?api-version=...&deployment=...``, or ``/v1/realtime`` with
``OpenAI-Beta: realtime=v1``) has its client events turned into GA ones on the way in and the
server events turned back on the way out: the flat session shape, ``response.audio.*`` names,
``conversation.item.created`` (no ``added``/``done``), ``text``/``audio`` content types
(REALTIME_PROTOCOL.md section 4). Preview values the service refuses are refused here too.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .audio import RATE
from .schema import InvalidRequest, check_keys

PREVIEW_PATH = "/openai/realtime"
OPENAI_PATH = "/v1/realtime"

FORMATS = {
    "pcm16": {"type": "audio/pcm", "rate": RATE},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse")
SESSION_KEYS = frozenset(
    {
        "modalities", "instructions", "voice", "input_audio_format", "output_audio_format",
        "input_audio_transcription", "input_audio_noise_reduction", "turn_detection", "tools",
        "tool_choice", "temperature", "max_response_output_tokens", "speed", "tracing", "model",
    }
)  # fmt: skip
TURN_KEYS = frozenset(
    {
        "type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response",
        "interrupt_response", "eagerness",
    }
)  # fmt: skip
MODELS = ("gpt-4o-realtime-preview", "gpt-4o-mini-realtime-preview", "gpt-realtime")
DEFAULT_TEMPERATURE = 0.8

# Server event names: GA -> preview (None: the preview service does not send it).
_NAMES: dict[str, str | None] = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
    "conversation.item.done": None,
}
_CONTENT_OUT = {"output_audio": "audio", "output_text": "text"}


def is_preview(path: str, headers: Mapping[str, str]) -> bool:
    """Does this handshake ask for the preview dialect (as the real services tell them apart)?"""
    path = path.rstrip("/")
    beta = headers.get("OpenAI-Beta", "").replace(" ", "").lower() == "realtime=v1"
    return path == PREVIEW_PATH or (path == OPENAI_PATH and beta)


def handshake_problem(query: Mapping[str, list[str]]) -> str | None:
    """What Azure's preview endpoint refuses with 400 before any WebSocket frame."""
    if not query.get("api-version", [""])[0]:
        return "Missing required query parameter 'api-version' (e.g. 2025-04-01-preview)."
    if not query.get("deployment", [""])[0]:
        return "Missing required query parameter 'deployment'."
    return None


# --- client events: preview -> GA -----------------------------------------------------------


def client_to_ga(event: dict[str, Any]) -> dict[str, Any]:
    """A preview client event as the GA agent understands it; raises InvalidRequest."""
    kind = event.get("type")
    if kind == "session.update" and isinstance(event.get("session"), dict):
        return {**event, "session": _session_to_ga(event["session"])}
    if kind == "conversation.item.create" and isinstance(event.get("item"), dict):
        return {**event, "item": _item_to_ga(event["item"])}
    if kind == "response.create" and isinstance(event.get("response"), dict):
        return {**event, "response": _response_params_to_ga(event["response"])}
    return event


def _session_to_ga(flat: dict[str, Any]) -> dict[str, Any]:
    check_keys(flat, SESSION_KEYS, "session")
    ga: dict[str, Any] = {"type": "realtime"}
    audio_in: dict[str, Any] = {}
    audio_out: dict[str, Any] = {}
    for key, value in flat.items():
        if key == "modalities":
            ga["output_modalities"] = _modalities(value, "session.modalities")
        elif key == "voice":
            audio_out["voice"] = _voice(value, "session.voice")
        elif key == "input_audio_format":
            audio_in["format"] = _format(value, "session.input_audio_format")
        elif key == "output_audio_format":
            audio_out["format"] = _format(value, "session.output_audio_format")
        elif key == "input_audio_transcription":
            audio_in["transcription"] = value
        elif key == "input_audio_noise_reduction":
            audio_in["noise_reduction"] = value
        elif key == "turn_detection":
            audio_in["turn_detection"] = _turn_detection(value)
        elif key == "speed":
            audio_out["speed"] = value
        elif key == "max_response_output_tokens":
            ga["max_output_tokens"] = value
        elif key == "temperature":
            _temperature(value)
        elif key == "model":
            if value not in MODELS:
                raise InvalidRequest(f"Invalid value for 'session.model': {value!r}.", param=key)
        else:  # instructions, tools, tool_choice, tracing: the same in both
            ga[key] = value
    audio = {k: v for k, v in (("input", audio_in), ("output", audio_out)) if v}
    if audio:
        ga["audio"] = audio
    return ga


def _modalities(value: Any, param: str) -> list[str]:
    if isinstance(value, list) and set(value) == {"text", "audio"} and len(value) == 2:
        return ["audio"]  # audio always comes with its transcript
    if value == ["text"]:
        return ["text"]
    raise InvalidRequest(
        f"Invalid value for '{param}': use ['text', 'audio'] or ['text'].", param=param
    )


def _voice(value: Any, param: str) -> Any:
    if value not in VOICES:
        raise InvalidRequest(
            f"Invalid value: {value!r}. Supported values are: "
            + ", ".join(f"'{v}'" for v in VOICES)
            + ".",
            param=param,
        )
    return value


def _format(value: Any, param: str) -> dict[str, Any]:
    if value not in FORMATS:
        raise InvalidRequest(
            f"Invalid value: {value!r}. Supported values are: 'pcm16', 'g711_ulaw' and "
            "'g711_alaw'.",
            param=param,
        )
    return dict(FORMATS[value])


def _turn_detection(value: Any) -> Any:
    if not isinstance(value, dict):
        return value  # null turns it off; anything else is refused by the GA checks
    check_keys(value, TURN_KEYS, "session.turn_detection")
    return {"type": "server_vad", **value}  # type is optional in preview


def _temperature(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.6 <= value <= 1.2:
        raise InvalidRequest(
            f"Invalid 'session.temperature': expected a number between 0.6 and 1.2, got {value!r}.",
            param="session.temperature",
        )


def _item_to_ga(item: dict[str, Any]) -> dict[str, Any]:
    item = copy.deepcopy(item)
    if item.get("role") == "assistant":
        for part in item.get("content") or []:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise InvalidRequest(
                    f"Invalid value: {kind!r} for an assistant message. Supported values "
                    "are: 'text'.",
                    param="item.content.type",
                )
            part["type"] = "output_text"
    return item


def _response_params_to_ga(params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    if "modalities" in params:
        params["output_modalities"] = _modalities(params.pop("modalities"), "response.modalities")
    output: dict[str, Any] = {}
    if "voice" in params:
        output["voice"] = _voice(params.pop("voice"), "response.voice")
    if "output_audio_format" in params:
        fmt = params.pop("output_audio_format")
        output["format"] = _format(fmt, "response.output_audio_format")
    params.pop("temperature", None)
    if output:
        params["audio"] = {"output": output}
    return params


# --- server events: GA -> preview -----------------------------------------------------------


def server_to_preview(event: dict[str, Any]) -> dict[str, Any] | None:
    """A GA server event as the preview service sends it; None when it sends no such event."""
    kind = event["type"]
    if kind in _NAMES:
        renamed = _NAMES[kind]
        if renamed is None:
            return None
        event = {**event, "type": renamed}
    if "session" in event and kind.startswith("session."):
        event = {**event, "session": session_to_preview(event["session"])}
    if "response" in event and kind.startswith("response."):
        event = {**event, "response": _response_to_preview(event["response"])}
    if isinstance(event.get("item"), dict):
        event = {**event, "item": _item_to_preview(event["item"])}
    return event


def session_to_preview(ga: dict[str, Any]) -> dict[str, Any]:
    audio_in = ga["audio"]["input"]
    audio_out = ga["audio"]["output"]
    turns = audio_in["turn_detection"]
    if turns is not None:
        turns = {k: v for k, v in turns.items() if k in TURN_KEYS}
    model = ga.get("model")
    return {
        "id": ga["id"],
        "object": "realtime.session",
        "model": model if model in MODELS else MODELS[0],  # Azure names the model, not the
        "expires_at": ga["expires_at"],  # deployment
        "modalities": ["text", "audio"] if ga["output_modalities"] == ["audio"] else ["text"],
        "instructions": ga["instructions"],
        "voice": audio_out["voice"],
        "input_audio_format": _format_name(audio_in["format"]),
        "output_audio_format": _format_name(audio_out["format"]),
        "input_audio_transcription": audio_in["transcription"],
        "input_audio_noise_reduction": audio_in["noise_reduction"],
        "turn_detection": turns,
        "tools": ga["tools"],
        "tool_choice": ga["tool_choice"] if isinstance(ga["tool_choice"], str) else "auto",
        "temperature": DEFAULT_TEMPERATURE,
        "max_response_output_tokens": ga["max_output_tokens"],
        "speed": audio_out.get("speed", 1.0),
        "tracing": ga.get("tracing"),
    }


def _format_name(fmt: dict[str, Any]) -> str:
    return next(name for name, ga in FORMATS.items() if ga["type"] == fmt["type"])


def _response_to_preview(resp: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in resp.items() if k not in ("output_modalities", "audio")}
    modality = (resp.get("output_modalities") or ["audio"])[0]
    out["modalities"] = ["text", "audio"] if modality == "audio" else ["text"]
    output = (resp.get("audio") or {}).get("output") or {}
    if "format" in output:
        out["output_audio_format"] = _format_name(output["format"])
    if "voice" in output:
        out["voice"] = output["voice"]
    out["output"] = [_item_to_preview(item) for item in resp.get("output") or []]
    usage = resp.get("usage")
    if usage:  # the preview usage has no image tokens and no cached-token breakdown
        details = usage["input_token_details"]
        kept = {k: details[k] for k in ("text_tokens", "audio_tokens", "cached_tokens")}
        out["usage"] = {**usage, "input_token_details": kept}
    return out


def _item_to_preview(item: dict[str, Any]) -> dict[str, Any]:
    content = [
        {**part, "type": _CONTENT_OUT.get(part.get("type"), part.get("type"))}
        for part in item.get("content") or []
    ]
    return {**item, "content": content} if "content" in item else item
