"""One embedded-agent session as a state machine without I/O: client frames in, server frames out.

:class:`AgentSession` takes each client frame (``receive``) and queues what the service would
answer (``take``), each already encoded in the connection's dialect, in wire order. A
response's audio deltas are the one thing with timing: the session queues a
:class:`StreamAudio` and the shell (:mod:`gateway.agent.server`) paces the deltas, asking
``next_delta`` for each and ``complete`` at the end; a barge-in or ``response.cancel`` in
between makes ``next_delta`` return None. Bad input never raises out of ``receive``: it
becomes an ``error`` event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from gateway.media.vad import SpeechStarted

from . import preview as preview_dialect
from .audio import RATE, InputAudio
from .conversation import Conversation
from .responses import Responder, Response, Script
from .schema import (
    SEMANTIC_SILENCE_MS,
    InvalidRequest,
    append_audio,
    default_session,
    merge_session,
    missing,
    need_dict,
    new_id,
    parse_event,
)

__all__ = ["AgentSession", "Frame", "Script", "StreamAudio"]

log = structlog.get_logger(__name__)

MIN_COMMIT_MS = 100


@dataclass(frozen=True, slots=True)
class Frame:
    """One server event, encoded: its (GA) type and its text frame."""

    type: str
    text: str


@dataclass(frozen=True, slots=True)
class StreamAudio:
    """Start pacing this response's audio deltas (``next_delta`` ... ``complete``)."""

    response: Response


Output = Frame | StreamAudio


class AgentSession:
    """The service's side of one Realtime session (GA inside; preview translated at the edges)."""

    def __init__(self, model: str, expires_at: float, *, preview: bool, script: Script) -> None:
        self.model = model
        self.config: dict[str, Any] = default_session(model, expires_at)
        if preview:
            self.config["audio"]["output"]["voice"] = "alloy"  # the preview models lack marin
        self.preview = preview
        self.id: str = self.config["id"]
        self.script = script
        self.received: list[dict[str, Any]] = []
        self.input = InputAudio()
        self.conversation = Conversation()
        self.responder = Responder(
            self.conversation, script, lambda: self.config, self._emit, self._stream
        )
        self._turn_item: str | None = None  # item id announced by speech_started
        self._turn_start_ms = 0
        self._out: list[Output] = []
        self._configure_input()
        self._configure_vad()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.retrieve": self._on_item_retrieve,
            "conversation.item.truncate": self._on_truncate,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "output_audio_buffer.clear": self._on_output_audio_buffer_clear,
        }

    # -- the interface ---------------------------------------------------------------------

    def take(self) -> list[Output]:
        """Everything queued since the last call, in wire order."""
        out, self._out = self._out, []
        return out

    def open(self) -> None:
        """The connection is up: ``session.created``."""
        self._emit({"type": "session.created", "session": self.config})

    def receive(self, message: str | bytes) -> None:
        """One client frame; its answers (or an ``error``) are queued for ``take``."""
        try:
            event = parse_event(message)
        except InvalidRequest as exc:
            self._error(exc.message, code=exc.code)
            return
        self._record(event)
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        try:
            if self.preview:
                event = preview_dialect.client_to_ga(event)
            self._dispatch(event)
        except InvalidRequest as exc:
            self._error(exc.message, code=exc.code, param=exc.param, event_id=event_id,
                        type_=exc.type)  # fmt: skip
        except Exception:
            log.exception("embedded_event_failed", session_id=self.id, type=event.get("type"))
            self._error(
                "The server had an error while processing your event.",
                code="server_error",
                event_id=event_id,
                type_="server_error",
            )

    @property
    def active(self) -> Response | None:
        """The response in progress, if any."""
        return self.responder.active

    @property
    def conversation_id(self) -> str:
        return self.responder.conversation_id

    def next_delta(self, resp: Response, delta: str, ms: float) -> bool:
        """Queue one audio delta of a streaming response; False once it was cut short."""
        return self.responder.next_delta(resp, delta, ms)

    def complete(self, resp: Response) -> None:
        """All of a response's audio is out: it ends ``completed`` (unless already ended)."""
        self.responder.complete(resp)

    def close(self) -> None:
        """The connection has ended: let go of the audio (closed sessions stay listed)."""
        self.responder.active = None
        self.input.release()
        self.conversation.release()

    # -- receiving -------------------------------------------------------------------------

    def _dispatch(self, event: dict[str, Any]) -> None:
        typ = event.get("type")
        handler = self._handlers.get(typ) if isinstance(typ, str) else None
        if handler is not None:
            handler(event)
        elif typ is None:
            raise missing("type")
        else:
            supported = ", ".join(f"'{t}'" for t in self._handlers)
            raise InvalidRequest(
                f"Invalid value: {typ!r}. Supported values are: {supported}.", param="type"
            )

    def _record(self, event: dict[str, Any]) -> None:
        keep = self.script.keep_events
        if keep <= 0:
            return
        self.received.append(event)
        if len(self.received) > keep:
            del self.received[: len(self.received) - keep // 2]

    # -- sending ---------------------------------------------------------------------------

    def _emit(self, event: dict[str, Any]) -> None:
        # Encoded now: later changes to an item must not reach a frame already queued.
        event = {"event_id": new_id("event"), **event}
        if self.preview:
            translated = preview_dialect.server_to_preview(event)
            if translated is None:
                return
            event = translated
        self._out.append(Frame(event["type"], json.dumps(event, separators=(",", ":"))))

    def _stream(self, resp: Response) -> None:
        self._out.append(StreamAudio(resp))

    def _error(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        event_id: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        error = {"type": type_, "code": code, "message": message, "param": param,
                 "event_id": event_id}  # fmt: skip
        self._emit({"type": "error", "error": error})

    # -- session.update ----------------------------------------------------------------------

    def _on_session_update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise missing("session")
        old = self.config
        new = merge_session(old, event["session"], voice_locked=self.responder.voice_locked)
        self.config = new
        if new["audio"]["input"]["format"] != old["audio"]["input"]["format"]:
            self._configure_input()
        if new["audio"]["input"]["turn_detection"] != old["audio"]["input"]["turn_detection"]:
            self._configure_vad()
        self._emit({"type": "session.updated", "session": self.config})

    def _configure_input(self) -> None:
        self.input.set_format(self.config["audio"]["input"]["format"]["type"])

    def _configure_vad(self) -> None:
        td = self.config["audio"]["input"]["turn_detection"]
        self._turn_item = None
        if td is None:
            self.input.no_vad()
        elif td["type"] == "server_vad":
            self.input.set_vad(
                td.get("threshold", 0.5),
                td.get("prefix_padding_ms", 300),
                td.get("silence_duration_ms", 500),
            )
        else:
            self.input.set_vad(0.5, 300, SEMANTIC_SILENCE_MS[td.get("eagerness") or "auto"])

    # -- input audio ---------------------------------------------------------------------------

    def _on_append(self, event: dict[str, Any]) -> None:
        data = append_audio(event)
        for edge in self.input.append(data):
            ms = self.input.edge_ms(edge)  # placed now: a turn that ended moves the start
            if isinstance(edge, SpeechStarted):
                self._speech_started(ms)
            else:
                self._speech_stopped(ms)

    def _speech_started(self, audio_start_ms: int) -> None:
        self._turn_item = new_id("item")
        self._turn_start_ms = audio_start_ms
        self._emit({"type": "input_audio_buffer.speech_started", "audio_start_ms": audio_start_ms,
                    "item_id": self._turn_item})  # fmt: skip
        td = self.config["audio"]["input"]["turn_detection"] or {}
        if self.active is not None and td.get("interrupt_response", True):
            self.responder.cancel("turn_detected")

    def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._turn_item or new_id("item")
        self._turn_item = None
        self._emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": audio_end_ms,
                    "item_id": item_id})  # fmt: skip
        self._commit_user_audio(item_id, self.input.take_turn(self._turn_start_ms, audio_end_ms))
        td = self.config["audio"]["input"]["turn_detection"] or {}
        if td.get("create_response", True) and self.active is None:
            self.responder.start(None)

    def _commit_user_audio(self, item_id: str, audio: np.ndarray) -> None:
        item, previous = self.conversation.add_user_audio(item_id, audio)
        self._emit({"type": "input_audio_buffer.committed", "item_id": item_id,
                    "previous_item_id": previous})  # fmt: skip
        self._emit({"type": "conversation.item.added", "item": item, "previous_item_id": previous})
        self._emit({"type": "conversation.item.done", "item": item, "previous_item_id": previous})
        if self.config["audio"]["input"]["transcription"] is not None:
            seconds = audio.size / RATE
            self._emit(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": f"(caller audio, {seconds:.2f} s)",
                    "usage": {"type": "duration", "seconds": round(seconds, 3)},
                }
            )

    def _on_commit(self, event: dict[str, Any]) -> None:
        audio = self.input.pending()
        ms = audio.size * 1000 / RATE
        if ms < MIN_COMMIT_MS:
            raise InvalidRequest(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        item_id = self._turn_item or new_id("item")
        self._turn_item = None
        self.input.clear()
        self._commit_user_audio(item_id, audio)

    def _on_clear(self, event: dict[str, Any]) -> None:
        self.input.clear()
        self._turn_item = None
        self._emit({"type": "input_audio_buffer.cleared"})

    def _on_output_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        raise InvalidRequest(
            "output_audio_buffer.clear is only supported for WebRTC and SIP sessions; over "
            "WebSocket the client owns playback.",
            param="type",
        )

    # -- conversation ------------------------------------------------------------------------

    def _on_item_create(self, event: dict[str, Any]) -> None:
        fmt_type = self.config["audio"]["input"]["format"]["type"]
        item, previous = self.conversation.create(event, fmt_type)
        self._emit({"type": "conversation.item.added", "item": item, "previous_item_id": previous})
        self._emit({"type": "conversation.item.done", "item": item, "previous_item_id": previous})

    def _on_item_delete(self, event: dict[str, Any]) -> None:
        item_id, _ = self.conversation.need(event)
        if self.active is not None and item_id == self.active.item_id:
            raise InvalidRequest(
                f"Item '{item_id}' belongs to the response in progress.", param="item_id"
            )
        self.conversation.delete(item_id)
        self._emit({"type": "conversation.item.deleted", "item_id": item_id})

    def _on_item_retrieve(self, event: dict[str, Any]) -> None:
        _, item = self.conversation.need(event)
        self._emit({"type": "conversation.item.retrieved", "item": item})

    def _on_truncate(self, event: dict[str, Any]) -> None:
        self._emit(self.conversation.truncate(event))

    # -- responses ---------------------------------------------------------------------------

    def _on_response_create(self, event: dict[str, Any]) -> None:
        params = event.get("response")
        if params is not None:
            params = need_dict(params, "response")
        if self.active is not None:
            raise InvalidRequest(
                "Conversation already has an active response in progress: "
                f"{self.active.id}. Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        self.responder.start(params)

    def _on_response_cancel(self, event: dict[str, Any]) -> None:
        self.responder.cancel_requested(event.get("response_id"))
