"""The Realtime API's wire protocol, sans-I/O.

Builds the client events the gateway sends and turns server events into small
dialect-neutral dataclasses, so the bridge never sees an event name. Only this
module knows which dialect (GA or preview) is spoken; see REALTIME_PROTOCOL.md
sections 1 (endpoints) and 4 (what the preview dialect names and shapes differently).
OpenAI's own endpoint speaks GA; only its credentials differ (see auth.py).
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

# pybase64 (SIMD) rather than the standard library's base64: 100 ms of model audio decodes in
# 1.3 us instead of 13, and a 20 ms append encodes in 0.6 us instead of 1.2 (same results,
# same binascii.Error on bad input).
import pybase64

from ..config import AgentConfig
from ..media.rates import MODEL_RATE
from .tool_definitions import tool_definitions
from .tool_definitions import tool_name as tool_name  # re-exported

PCM16_RATE = MODEL_RATE


# --- Server events, dialect-neutral ---------------------------------------------------------


@dataclass(slots=True)
class SessionReady:
    """session.created / session.updated."""

    session: dict[str, Any]
    created: bool


@dataclass(slots=True)
class SpeechStarted:
    audio_start_ms: int
    item_id: str


@dataclass(slots=True)
class SpeechStopped:
    audio_end_ms: int
    item_id: str


@dataclass(slots=True)
class ResponseStarted:
    response_id: str


@dataclass(slots=True)
class AudioDelta:
    response_id: str
    item_id: str
    content_index: int
    audio: bytes


@dataclass(slots=True)
class AudioDone:
    response_id: str
    item_id: str
    content_index: int = 0


@dataclass(slots=True)
class Transcript:
    """A finished transcript of one turn: the caller's (input) or the agent's (output)."""

    role: str  # "caller" | "agent"
    item_id: str
    text: str


@dataclass(slots=True)
class TranscriptDelta:
    """A piece of the agent's output transcript, ahead of its `Transcript` (kept for a call
    that ends before the transcript is done)."""

    item_id: str
    delta: str


@dataclass(slots=True)
class ResponseDone:
    response_id: str
    status: str
    reason: str | None
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ItemTruncated:
    item_id: str
    audio_end_ms: int


@dataclass(slots=True)
class ServiceError:
    """An `error` event. Most are recoverable: the session stays open."""

    code: str | None
    message: str
    type: str | None = None
    event_id: str | None = None

    @property
    def benign(self) -> bool:
        return self.code in BENIGN_ERRORS


@dataclass(slots=True)
class FunctionCall:
    """The model calls a tool; its arguments are complete (JSON text)."""

    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Malformed:
    """A server frame that is not a well-formed event (bad JSON, a missing field): skipped."""

    reason: str
    excerpt: str | None = None  # its first 200 characters, for the log


@dataclass(slots=True)
class Other:
    """Any event the bridge has no use for (kept for debug logging)."""

    type: str


ServerEvent = (
    SessionReady
    | SpeechStarted
    | SpeechStopped
    | ResponseStarted
    | AudioDelta
    | AudioDone
    | Transcript
    | TranscriptDelta
    | ResponseDone
    | ItemTruncated
    | ServiceError
    | FunctionCall
    | Malformed
    | Other
)

BENIGN_ERRORS = frozenset({"response_cancel_not_active"})


# --- Client commands, dialect-neutral ----------------------------------------------------------
# What the call asks of the model, as values; the link encodes them in the dialect of the
# session they go to (Dialect.encode), so no one re-parses JSON text to learn what was sent.
# The caller's audio is not among them: it goes 50 times a second as bytes (send_audio).


@dataclass(frozen=True, slots=True)
class CreateResponse:
    """response.create: the model answers now (with these instructions for this answer)."""

    instructions: str | None = None


@dataclass(frozen=True, slots=True)
class CancelResponse:
    """response.cancel of the answer in progress."""

    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class Truncate:
    """conversation.item.truncate: the caller heard only `audio_end_ms` of this item."""

    item_id: str
    audio_end_ms: int
    content_index: int = 0


@dataclass(frozen=True, slots=True)
class AddText:
    """A text message put into the conversation (keys, the call so far for a new session)."""

    role: str  # "user" | "assistant" | "system"
    text: str
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionOutput:
    """A tool's result for the model's function call `call_id`."""

    call_id: str
    output: str


ClientCommand = CreateResponse | CancelResponse | Truncate | AddText | FunctionOutput


class ProtocolError(ValueError):
    """A server frame that is not a well-formed event (bad JSON, missing fields)."""


# --- Shared helpers and the GA event table --------------------------------------------------


def _transcription(agent: AgentConfig) -> dict[str, Any]:
    assert agent.input_transcription is not None
    transcription: dict[str, Any] = {"model": agent.input_transcription.model}
    if agent.input_transcription.language:
        transcription["language"] = agent.input_transcription.language
    return transcription


def bytes_per_ms(audio_format: str) -> int:
    """Bytes of model audio per millisecond: G.711 8 kHz, or PCM16 at 24 kHz."""
    return 8 if audio_format == "g711" else PCM16_RATE * 2 // 1000


def _turn_detection(agent: AgentConfig) -> dict[str, Any] | None:
    td = agent.turn_detection
    if td.type == "none":
        return None
    return td.model_dump(exclude_none=True)


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def _session(ev: dict[str, Any], created: bool) -> SessionReady:
    return SessionReady(session=ev["session"], created=created)


def _response_done(ev: dict[str, Any]) -> ResponseDone:
    response = ev["response"]
    details = response.get("status_details") or {}
    return ResponseDone(
        response_id=response.get("id", ""),
        status=response.get("status", ""),
        reason=details.get("reason"),
        usage=response.get("usage") or {},
    )


def _output_item_done(ev: dict[str, Any]) -> FunctionCall | Other:
    """A finished function call item: the one place both dialects give name and arguments
    together (preview's function_call_arguments.done has no name)."""
    item = ev["item"]
    if item.get("type") != "function_call":
        return Other(ev["type"])
    return FunctionCall(
        ev.get("response_id", ""),
        item.get("id", ""),
        item["call_id"],
        item["name"],
        item.get("arguments") or "{}",
    )


def _error(ev: dict[str, Any]) -> ServiceError:
    err = ev.get("error") or {}
    return ServiceError(
        code=err.get("code"),
        message=str(err.get("message", "")),
        type=err.get("type"),
        event_id=err.get("event_id"),
    )


_GA_HANDLERS = {
    "session.created": lambda ev: _session(ev, True),
    "session.updated": lambda ev: _session(ev, False),
    "input_audio_buffer.speech_started": lambda ev: SpeechStarted(
        int(ev["audio_start_ms"]), ev["item_id"]
    ),
    "input_audio_buffer.speech_stopped": lambda ev: SpeechStopped(
        int(ev["audio_end_ms"]), ev["item_id"]
    ),
    "response.created": lambda ev: ResponseStarted(ev["response"]["id"]),
    "response.output_audio.delta": lambda ev: AudioDelta(
        ev["response_id"],
        ev["item_id"],
        int(ev.get("content_index", 0)),
        pybase64.b64decode(ev["delta"], validate=True),
    ),
    "response.output_audio.done": lambda ev: AudioDone(
        ev["response_id"], ev["item_id"], int(ev.get("content_index", 0))
    ),
    "response.output_audio_transcript.delta": lambda ev: TranscriptDelta(
        ev["item_id"], ev.get("delta") or ""
    ),
    "response.output_audio_transcript.done": lambda ev: Transcript(
        "agent", ev["item_id"], ev.get("transcript") or ""
    ),
    "conversation.item.input_audio_transcription.completed": lambda ev: Transcript(
        "caller", ev["item_id"], ev.get("transcript") or ""
    ),
    "response.done": _response_done,
    "conversation.item.truncated": lambda ev: ItemTruncated(ev["item_id"], int(ev["audio_end_ms"])),
    "error": _error,
    "response.output_item.done": _output_item_done,
}


# --- The GA dialect ---------------------------------------------------------------------------


class GaDialect:
    """GA Realtime protocol (no OpenAI-Beta header; `model=<deployment>` on the URL)."""

    name = "ga"
    _handlers = _GA_HANDLERS
    _ASSISTANT_TEXT = "output_text"

    def url(self, base_url: str, deployment: str) -> str:
        """Append the deployment as `model=` to the base URL, keeping any existing query."""
        parts = urlsplit(base_url)
        query = f"{parts.query}&" if parts.query else ""
        query += urlencode({"model": deployment})
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    def handshake_headers(self) -> dict[str, str]:
        return {}

    def audio_format(self, audio_format: str, codec: str) -> Any:
        """The session's audio format: PCM16 at 24 kHz, or G.711 passed through."""
        if audio_format == "g711":
            return {"type": "audio/pcmu" if codec == "PCMU" else "audio/pcma"}
        return {"type": "audio/pcm", "rate": PCM16_RATE}

    def session_update(self, agent: AgentConfig, audio_format: str, codec: str) -> str:
        fmt = self.audio_format(audio_format, codec)
        audio_in: dict[str, Any] = {
            "format": fmt,
            "turn_detection": _turn_detection(agent),
        }
        if agent.input_transcription is not None:
            audio_in["transcription"] = _transcription(agent)
        if agent.noise_reduction is not None:
            audio_in["noise_reduction"] = {"type": agent.noise_reduction}
        session = {
            "type": "realtime",
            "instructions": agent.instructions,
            "output_modalities": ["audio"],
            "max_output_tokens": agent.max_output_tokens,
            "audio": {
                "input": audio_in,
                "output": {"format": fmt, "voice": agent.voice},
            },
        }
        if agent.tools:
            session["tools"] = tool_definitions(agent.tools)
            session["tool_choice"] = "auto"
        return _dumps({"type": "session.update", "session": session})

    def conversation_item(self, role: str, text: str, item_id: str | None = None) -> str:
        """A text message put into the conversation: how a new session learns the call so far."""
        part = "input_text" if role in ("user", "system") else self._ASSISTANT_TEXT
        item: dict[str, Any] = {"type": "message", "role": role}
        if item_id:
            item["id"] = item_id
        item["content"] = [{"type": part, "text": text}]
        return _dumps({"type": "conversation.item.create", "item": item})

    def function_output(self, call_id: str, output: str) -> str:
        """A tool's result; the model speaks about it after the next response.create."""
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        return _dumps({"type": "conversation.item.create", "item": item})

    def append_audio(self, audio: bytes) -> str:
        """One `input_audio_buffer.append`; built by hand, it runs 50 times a second per call."""
        b64 = pybase64.b64encode_as_string(audio)
        return '{"type":"input_audio_buffer.append","audio":"' + b64 + '"}'

    def response_create(self, instructions: str | None = None) -> str:
        event: dict[str, Any] = {"type": "response.create"}
        if instructions:
            event["response"] = {"instructions": instructions}
        return _dumps(event)

    def response_cancel(self, response_id: str | None = None) -> str:
        event: dict[str, Any] = {"type": "response.cancel"}
        if response_id:
            event["response_id"] = response_id
        return _dumps(event)

    def truncate(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> str:
        return _dumps(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": int(audio_end_ms),
            }
        )

    def encode(self, command: ClientCommand) -> str:
        """One client command as this dialect's JSON text."""
        match command:
            case CreateResponse():
                return self.response_create(command.instructions)
            case CancelResponse():
                return self.response_cancel(command.response_id)
            case Truncate():
                return self.truncate(command.item_id, command.audio_end_ms, command.content_index)
            case AddText():
                return self.conversation_item(command.role, command.text, command.item_id)
            case FunctionOutput():
                return self.function_output(command.call_id, command.output)
        raise TypeError(f"not a client command: {command!r}")

    def parse(self, text: str | bytes) -> ServerEvent:
        """Parse one server frame leniently: dispatch on `type`, read only what we use."""
        try:
            event = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"server sent invalid JSON: {exc}") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise ProtocolError("server event has no type")
        kind: str = event["type"]
        try:
            handler = self._handlers.get(kind)
            return handler(event) if handler is not None else Other(kind)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
            raise ProtocolError(f"malformed {kind} event: {exc!r}") from None


# --- The preview dialect ----------------------------------------------------------------------

_PREVIEW_NAMES = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
}
_PREVIEW_HANDLERS = {
    **{k: v for k, v in _GA_HANDLERS.items() if k not in _PREVIEW_NAMES.values()},
    **{old: _GA_HANDLERS[new] for old, new in _PREVIEW_NAMES.items()},
}


class PreviewDialect(GaDialect):
    """Azure's preview Realtime API (`/openai/realtime?api-version=...&deployment=...`).

    Same client events as GA except the flat session shape and assistant `text` content;
    the server renames the audio events (REALTIME_PROTOCOL.md section 4).
    """

    name = "preview"
    _ASSISTANT_TEXT = "text"
    _handlers = _PREVIEW_HANDLERS

    def __init__(self, api_version: str) -> None:
        self.api_version = api_version

    def url(self, base_url: str, deployment: str) -> str:
        parts = urlsplit(base_url)
        query = f"{parts.query}&" if parts.query else ""
        query += urlencode({"api-version": self.api_version, "deployment": deployment})
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    def handshake_headers(self) -> dict[str, str]:
        return {"OpenAI-Beta": "realtime=v1"}

    def audio_format(self, audio_format: str, codec: str) -> Any:
        if audio_format == "g711":
            return "g711_ulaw" if codec == "PCMU" else "g711_alaw"
        return "pcm16"

    def session_update(self, agent: AgentConfig, audio_format: str, codec: str) -> str:
        fmt = self.audio_format(audio_format, codec)
        session: dict[str, Any] = {
            "modalities": ["text", "audio"],
            "instructions": agent.instructions,
            "voice": agent.voice,
            "input_audio_format": fmt,
            "output_audio_format": fmt,
            "turn_detection": _turn_detection(agent),
            "max_response_output_tokens": agent.max_output_tokens,
        }
        if agent.input_transcription is not None:
            session["input_audio_transcription"] = _transcription(agent)
        if agent.noise_reduction is not None:
            session["input_audio_noise_reduction"] = {"type": agent.noise_reduction}
        if agent.tools:
            session["tools"] = tool_definitions(agent.tools)
            session["tool_choice"] = "auto"
        return _dumps({"type": "session.update", "session": session})


Dialect = GaDialect  # every dialect derives from GA and changes what differs


def dialect_for(protocol: str, api_version: str | None = None) -> Dialect:
    """The dialect object for `realtime.protocol` (and its `api_version`, preview only)."""
    if protocol == "ga":
        return GaDialect()
    if protocol == "preview":
        if not api_version:
            raise ValueError("realtime.protocol preview needs realtime.api_version")
        return PreviewDialect(api_version)
    raise ValueError(f"realtime.protocol {protocol!r} is not supported (use ga or preview)")
