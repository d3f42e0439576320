"""The embedded agent's responses: one answer's state and the server events that tell it (sans-I/O).

Each function returns the events, in wire order, for one step of a response: its start, a
function call, its end (completed or cancelled). The session decides when; nothing here sends.
"""

from __future__ import annotations

import math
from typing import Any

from .schema import new_id

__all__ = [
    "Response",
    "finish_events",
    "function_call_events",
    "response_object",
    "start_events",
]

RATE_LIMITS = [
    {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 0.06},
    {"name": "tokens", "limit": 40000, "remaining": 35904, "reset_seconds": 6.144},
]


class Response:
    """One response: its audio deltas to stream, and how far it has got."""

    STREAMING, COMPLETING, DONE = "streaming", "completing", "done"

    def __init__(
        self,
        *,
        modality: str,
        fmt: dict[str, Any],
        voice: Any,
        chunks: list[tuple[str, float]],
        transcript: str,
        input_audio_ms: float,
        metadata: Any,
    ) -> None:
        self.id = new_id("resp")
        self.item_id = new_id("item")
        self.modality = modality
        self.format = fmt
        self.voice = voice
        self.chunks = chunks  # (base64 delta, ms of audio in it)
        self.transcript = transcript
        self.input_audio_ms = input_audio_ms
        self.metadata = metadata
        self.state = self.STREAMING
        self.audio_ms = 0.0  # audio sent so far

    def ids(self) -> dict[str, Any]:
        """The fields that place a delta: response, item, output and content index."""
        return {
            "response_id": self.id,
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
        }


def _usage(resp: Response, config: dict[str, Any]) -> dict[str, Any]:
    text_in = 20 + len(config["instructions"]) // 4
    audio_in = math.ceil(resp.input_audio_ms / 100)  # about 10 tokens per second heard
    text_out = max(1, len(resp.transcript) // 4)
    audio_out = math.ceil(resp.audio_ms / 50)  # about 20 tokens per second spoken
    return {
        "total_tokens": text_in + audio_in + text_out + audio_out,
        "input_tokens": text_in + audio_in,
        "output_tokens": text_out + audio_out,
        "input_token_details": {
            "text_tokens": text_in,
            "audio_tokens": audio_in,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


def response_object(
    resp: Response,
    status: str,
    config: dict[str, Any],
    conversation_id: str,
    *,
    reason: str | None = None,
    output: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``response`` object of ``response.created`` / ``response.done``."""
    obj: dict[str, Any] = {
        "object": "realtime.response",
        "id": resp.id,
        "status": status,
        "status_details": None,
        "output": output or [],
        "conversation_id": conversation_id,
        "output_modalities": [resp.modality],
        "max_output_tokens": config["max_output_tokens"],
        "audio": {"output": {"format": resp.format, "voice": resp.voice}},
        "usage": None,
        "metadata": resp.metadata,
    }
    if status == "cancelled":
        obj["status_details"] = {"type": "cancelled", "reason": reason}
    if status != "in_progress":
        obj["usage"] = _usage(resp, config)
    return obj


def start_events(
    resp: Response, created: dict[str, Any], item: dict[str, Any], previous: str | None
) -> list[dict[str, Any]]:
    """From ``response.created`` to the transcript delta, before the first audio delta."""
    if resp.modality == "audio":
        part: dict[str, Any] = {"type": "audio", "transcript": ""}
        delta_type = "response.output_audio_transcript.delta"
    else:
        part = {"type": "text", "text": ""}
        delta_type = "response.output_text.delta"
    return [
        {"type": "response.created", "response": created},
        {"type": "rate_limits.updated", "rate_limits": RATE_LIMITS},
        {"type": "conversation.item.added", "item": item, "previous_item_id": previous},
        {"type": "response.output_item.added", "response_id": resp.id, "output_index": 0,
         "item": item},
        {"type": "response.content_part.added", **resp.ids(), "part": part},
        {"type": delta_type, **resp.ids(), "delta": resp.transcript},
    ]  # fmt: skip


def function_call_events(
    resp: Response, created: dict[str, Any], item: dict[str, Any], arguments: str
) -> list[dict[str, Any]]:
    """A response whose only output is a function call, as the service streams one; ``item``
    is the finished call (the ``in_progress`` one is announced first)."""
    ids = {"response_id": resp.id, "item_id": resp.item_id, "output_index": 0}
    started = {**item, "status": "in_progress", "arguments": ""}
    call_id, name = item["call_id"], item["name"]
    return [
        {"type": "response.created", "response": created},
        {"type": "response.output_item.added", "response_id": resp.id, "output_index": 0,
         "item": started},
        {"type": "response.function_call_arguments.delta", **ids, "call_id": call_id,
         "delta": arguments},
        {"type": "response.function_call_arguments.done", **ids, "call_id": call_id,
         "name": name, "arguments": arguments},
        {"type": "response.output_item.done", "response_id": resp.id, "output_index": 0,
         "item": item},
        {"type": "conversation.item.done", "item": item},
    ]  # fmt: skip


def finish_events(
    resp: Response, status: str, item: dict[str, Any], previous: str | None
) -> list[dict[str, Any]]:
    """The end of an answer up to (not including) ``response.done``; fills in ``item``."""
    ids = resp.ids()
    events: list[dict[str, Any]] = []
    if resp.modality == "audio":
        events.append(
            {"type": "response.output_audio_transcript.done", **ids, "transcript": resp.transcript}
        )
        events.append({"type": "response.output_audio.done", **ids})
        part: dict[str, Any] = {"type": "audio", "transcript": resp.transcript}
        content = [{"type": "output_audio", "transcript": resp.transcript}]
    else:
        events.append({"type": "response.output_text.done", **ids, "text": resp.transcript})
        part = {"type": "text", "text": resp.transcript}
        content = [{"type": "output_text", "text": resp.transcript}]
    events.append({"type": "response.content_part.done", **ids, "part": part})
    item.update(
        {
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "completed" if status == "completed" else "incomplete",
            "content": content,
        }
    )
    events.append(
        {"type": "response.output_item.done", "response_id": resp.id, "output_index": 0,
         "item": item}
    )  # fmt: skip
    events.append({"type": "conversation.item.done", "item": item, "previous_item_id": previous})
    return events
