"""The Realtime API's wire protocol, sans-I/O.

Builds the client events the gateway sends and turns server events into small
dialect-neutral dataclasses, so the bridge never sees an event name. Only this
module knows which dialect (GA or preview) is spoken; see REALTIME_PROTOCOL.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..config import AgentConfig

PCM16_RATE = 24_000


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
    | Other
)

BENIGN_ERRORS = frozenset({"response_cancel_not_active"})


class ProtocolError(ValueError):
    """A server frame that is not a well-formed event (bad JSON, missing fields)."""


# --- The GA dialect ---------------------------------------------------------------------------


class GaDialect:
    """GA Realtime protocol (no OpenAI-Beta header; `model=<deployment>` on the URL)."""

    name = "ga"

    def url(self, base_url: str, deployment: str) -> str:
        """Append the deployment as `model=` to the base URL, keeping any existing query."""
        parts = urlsplit(base_url)
        query = f"{parts.query}&" if parts.query else ""
        query += urlencode({"model": deployment})
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    def handshake_headers(self) -> dict[str, str]:
        return {}

    def audio_format(self, audio_format: str, codec: str) -> dict[str, Any]:
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
            transcription: dict[str, Any] = {"model": agent.input_transcription.model}
            if agent.input_transcription.language:
                transcription["language"] = agent.input_transcription.language
            audio_in["transcription"] = transcription
        if agent.noise_reduction is not None:
            audio_in["noise_reduction"] = {"type": agent.noise_reduction}
        session = {
            "type": "realtime",
            "instructions": agent.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": audio_in,
                "output": {"format": fmt, "voice": agent.voice},
            },
        }
        return _dumps({"type": "session.update", "session": session})

    def append_audio(self, audio: bytes) -> str:
        """One `input_audio_buffer.append`; built by hand, it runs 50 times a second per call."""
        b64 = base64.b64encode(audio).decode("ascii")
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
            handler = _GA_HANDLERS.get(kind)
            return handler(event) if handler is not None else Other(kind)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ProtocolError(f"malformed {kind} event: {exc!r}") from None


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
        base64.b64decode(ev["delta"], validate=True),
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
    "conversation.item.truncated": lambda ev: ItemTruncated(
        ev["item_id"], int(ev["audio_end_ms"])
    ),
    "error": _error,
}


def dialect_for(protocol: str) -> GaDialect:
    """The dialect object for `realtime.protocol`."""
    if protocol == "ga":
        return GaDialect()
    raise ValueError(f"realtime.protocol {protocol!r} is not supported yet (use 'ga')")
