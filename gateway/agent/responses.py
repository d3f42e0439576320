"""The embedded agent's responses: what it answers, and the server events that tell it (sans-I/O).

:class:`Responder` owns the response in progress (start, stream, cancel, finish); the
functions build the events, in wire order, for one step of a response: its start, a function
call, its end (completed or cancelled). Nothing here sends: events go to an ``emit`` callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .audio import RATE, chime, encode_chunks
from .conversation import Conversation
from .schema import InvalidRequest, metadata, new_id, response_settings

__all__ = [
    "CHIME_TRANSCRIPT",
    "ECHO_TRANSCRIPT",
    "Responder",
    "Response",
    "Script",
    "finish_events",
    "function_call_events",
    "response_object",
    "start_events",
]

ECHO_TRANSCRIPT = "(echo of your last turn)"
CHIME_TRANSCRIPT = "(two-tone chime: the echo line is ready, speak and hear yourself)"
TEXT_REPLY = "Echo test line: I can only play your words back, in audio."
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


class Script(Protocol):
    """What a test scripts for the agent to say (the server holds it; read at each response)."""

    answer: tuple[np.ndarray, str] | None
    function_calls: list[tuple[str, str]]
    keep_events: int


class Responder:
    """The response in progress, as the service runs one: start, stream, cancel, finish.

    ``emit`` queues a server event; ``stream`` asks the shell to pace a response's deltas
    (each through ``next_delta``, then ``complete``). ``config`` returns the session as it is now.
    """

    def __init__(
        self,
        conversation: Conversation,
        script: Script,
        config: Callable[[], dict[str, Any]],
        emit: Callable[[dict[str, Any]], None],
        stream: Callable[[Response], None],
    ) -> None:
        self.conversation = conversation
        self.script = script
        self.conversation_id = new_id("conv")
        self.active: Response | None = None
        self.voice_locked = False  # assistant audio exists: voice and model are fixed
        self._config = config
        self._emit = emit
        self._stream = stream

    def start(self, params: dict[str, Any] | None) -> None:
        """Answer now: a scripted function call (turns only), else audio or text."""
        if params is None and self.script.function_calls:
            self._call_function(*self.script.function_calls.pop(0))
            return
        params = params or {}
        modality, fmt, voice = response_settings(params, self._config())
        audio, transcript, input_ms = self._response_audio()
        chunks: list[tuple[str, float]] = []
        if modality == "audio":
            chunks = encode_chunks(audio, fmt["type"])
            self.voice_locked = True
        else:
            transcript = TEXT_REPLY
        resp = Response(modality=modality, fmt=fmt, voice=voice, chunks=chunks,
                        transcript=transcript, input_audio_ms=input_ms,
                        metadata=metadata(params.get("metadata")))  # fmt: skip
        self.active = resp
        created = self._object(resp, "in_progress")
        previous = self.conversation.last
        item = {"id": resp.item_id, "object": "realtime.item", "type": "message",
                "role": "assistant", "status": "in_progress", "content": []}  # fmt: skip
        self.conversation.add(item, previous)
        if modality == "audio":
            self.conversation.audio_ms[resp.item_id] = 0.0
        for event in start_events(resp, created, item, previous):
            self._emit(event)
        self._stream(resp)

    def next_delta(self, resp: Response, delta: str, ms: float) -> bool:
        """Queue one audio delta of a streaming response; False once it was cut short."""
        if resp.state != Response.STREAMING:
            return False
        resp.audio_ms += ms
        if resp.item_id in self.conversation.audio_ms:
            self.conversation.audio_ms[resp.item_id] = resp.audio_ms
        self._emit({"type": "response.output_audio.delta", **resp.ids(), "delta": delta})
        return True

    def complete(self, resp: Response) -> None:
        """All of a response's audio is out: it ends ``completed`` (unless already ended)."""
        if resp.state == Response.STREAMING:
            resp.state = Response.COMPLETING
            self._finish(resp, "completed", None)

    def cancel(self, reason: str) -> None:
        """Cut the active response short (``turn_detected``, ``client_cancelled``)."""
        resp = self.active
        if resp is None or resp.state != Response.STREAMING:
            return
        resp.state = Response.COMPLETING  # next_delta queues nothing from now on
        self._finish(resp, "cancelled", reason)

    def cancel_requested(self, wanted: Any) -> None:
        """``response.cancel``: the active response (or the one named), else refused."""
        resp = self.active
        if resp is None or resp.state != Response.STREAMING or wanted not in (None, resp.id):
            what = f" with id '{wanted}'" if wanted else ""
            raise InvalidRequest(
                f"Cancellation failed: no active response{what} found.",
                code="response_cancel_not_active",
            )
        self.cancel("client_cancelled")

    def _response_audio(self) -> tuple[np.ndarray, str, float]:
        """What to play: the caller's last turn if it is the last thing said (or the scripted
        ``answer``), else the chime."""
        user = self.conversation.user_audio
        if user is not None and user[0] == self.conversation.last:
            heard_ms = user[1].size * 1000 / RATE
            if self.script.answer is not None:
                return self.script.answer[0], self.script.answer[1], heard_ms
            return user[1], ECHO_TRANSCRIPT, heard_ms
        return chime(), CHIME_TRANSCRIPT, 0.0

    def _call_function(self, name: str, arguments: str) -> None:
        """A response whose only output is a function call, as the service streams one."""
        cfg = self._config()["audio"]["output"]
        resp = Response(modality="audio", fmt=cfg["format"], voice=cfg["voice"], chunks=[],
                        transcript="", input_audio_ms=0.0, metadata=None)  # fmt: skip
        item: dict[str, Any] = {"id": resp.item_id, "object": "realtime.item",
                                "type": "function_call", "status": "in_progress",
                                "call_id": new_id("call"), "name": name,
                                "arguments": ""}  # fmt: skip
        self.conversation.add(item, self.conversation.last)
        created = self._object(resp, "in_progress")
        item = {**item, "status": "completed", "arguments": arguments}
        self.conversation.items[resp.item_id] = item
        for event in function_call_events(resp, created, item, arguments):
            self._emit(event)
        done = self._object(resp, "completed", output=[item])
        self._emit({"type": "response.done", "response": done})

    def _finish(self, resp: Response, status: str, reason: str | None) -> None:
        item = self.conversation.items.get(resp.item_id) or {"id": resp.item_id}
        previous = self.conversation.previous_of(resp.item_id)
        for event in finish_events(resp, status, item, previous):
            self._emit(event)
        resp.state = Response.DONE
        if self.active is resp:
            self.active = None
        done = self._object(resp, status, reason=reason, output=[item])
        self._emit({"type": "response.done", "response": done})

    def _object(self, resp: Response, status: str, **kw: Any) -> dict[str, Any]:
        return response_object(resp, status, self._config(), self.conversation_id, **kw)
