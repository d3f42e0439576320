"""The embedded agent: a local Realtime server (GA protocol, server side) that is an echo test line.

It is a real WebSocket server on loopback, so the gateway's exact client code path runs with no
Azure account, and it is the faithful fake the tests use. What it does, as telephony people know
an echo test: it finds the caller's turns with an energy VAD (:mod:`gateway.realtime.vad`) and
answers each turn by playing the caller's own words back. A ``response.create`` with no caller
turn to answer (the greeting) plays a short two-tone chime.

What it speaks, as the service does (REALTIME_PROTOCOL.md):

* handshake: ``/openai/v1/realtime?model=<deployment>`` (also ``/v1/realtime``), ``api-key`` or
  ``Authorization: Bearer`` when a key is set, Azure-like JSON bodies on 400/401/403/404/429;
* ``session.created`` on connect, partial ``session.update`` with validation and
  ``session.updated`` (full effective session); unknown session keys are refused like the
  service does (``unknown_parameter``);
* input in ``audio/pcm`` (24 kHz) or ``audio/pcmu``/``audio/pcma`` (8 kHz), VAD turns
  (``speech_started``/``speech_stopped``/``committed``, user item added/done), responses whose
  audio arrives in 100 ms deltas at ``burst_speed`` x real time, barge-in cancellation
  (``turn_detected``), ``response.cancel``, ``conversation.item.truncate``, manual
  commit/clear, ``conversation.item.create/delete/retrieve``, errors for everything it refuses;
* ``max_session_s``: close code 1001, as the service does at its session limit.

Bad input never closes the session and never takes the server down: it gets an ``error`` event.
Every task belongs to one connection and ends with it; :meth:`EmbeddedRealtimeServer.close`
leaves nothing running.

The preview dialect (Azure ``/openai/realtime?api-version=...&deployment=...``, or
``/v1/realtime`` with ``OpenAI-Beta: realtime=v1``) is spoken by translating at the edges of a
session (:mod:`gateway.realtime.embedded_preview`). Tests can drop a session mid-call
(:meth:`EmbeddedSession.drop`: close code 1011, or 1006 for a socket that just dies).

Not modelled: tools (a function call is never made), input transcription (a placeholder
transcript is sent when transcription is configured), ``idle_timeout_ms``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hmac
import http
import itertools
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import soxr
import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gateway.realtime.vad import EnergyVad, SpeechStarted, SpeechStopped

__all__ = ["EmbeddedRealtimeServer", "EmbeddedSession"]

log = structlog.get_logger(__name__)

RATE = 24000  # internal rate: the session's audio is kept as 24 kHz int16
G711_RATE = 8000
CHUNK_MS = 100  # one response.output_audio.delta
RING_SECONDS = 60  # input audio kept for turns
MAX_APPEND_CHARS = 15 * 1024 * 1024  # the service's limit per input_audio_buffer.append
MIN_COMMIT_MS = 100
MAX_ITEMS = 1000  # conversation items remembered per session
KEEP_CLOSED_SESSIONS = 100
PATHS = ("/openai/v1/realtime", "/v1/realtime")

ECHO_TRANSCRIPT = "(echo of your last turn)"
CHIME_TRANSCRIPT = "(two-tone chime: the echo line is ready, speak and hear yourself)"
TEXT_REPLY = "Echo test line: I can only play your words back, in audio."

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

REFUSALS: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "The 'model' query parameter is required: /openai/v1/realtime?model=<deployment>.",
    ),
    401: (
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
        "a valid key for an active subscription and use a correct regional API endpoint for your "
        "resource.",
    ),
    403: (
        "PermissionDenied",
        "The principal lacks the required data action "
        "`Microsoft.CognitiveServices/accounts/OpenAI/deployments/realtime/action`.",
    ),
    404: (
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within "
        "the last 5 minutes, please wait a moment and try again.",
    ),
    429: (
        "429",
        "Requests to the Realtime API have exceeded the concurrency or token rate limit of your "
        "current pricing tier. Please retry after {retry_after} second(s).",
    ),
}  # fmt: skip

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


# ---------------------------------------------------------------------------------------------
# audio helpers


def _g711(fmt_type: str) -> Any:
    # Imported lazily: gateway.media.g711 is a separate module, and pcm sessions need none of it.
    from gateway.media.g711 import codec_by_name

    return codec_by_name("PCMU" if fmt_type == "audio/pcmu" else "PCMA")


def chime(rate: int = RATE) -> np.ndarray:
    """A short pleasant two-tone chime (660 Hz then 990 Hz, 0.6 s), int16 at ``rate``."""

    def tone(freq: float, seconds: float) -> np.ndarray:
        n = int(rate * seconds)
        t = np.arange(n) / rate
        env = np.ones(n)
        fade = int(rate * 0.015)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
        env[:fade] = ramp
        env[-fade:] = ramp[::-1]
        env *= np.exp(-2.0 * t)  # a bell-like decay
        return env * (np.sin(2 * np.pi * freq * t) + 0.2 * np.sin(4 * np.pi * freq * t))

    x = np.concatenate([tone(660.0, 0.25), np.zeros(int(rate * 0.05)), tone(990.0, 0.30)])
    return (x / np.max(np.abs(x)) * 0.3 * 32767).astype(np.int16)


class _Ring:
    """The last ``capacity`` samples of a stream, addressed by absolute sample index.

    Storage starts small and doubles up to ``capacity`` as audio arrives, so a short call does
    not hold a minute of audio.
    """

    def __init__(self, capacity: int, initial: int = 5 * RATE) -> None:
        self.capacity = capacity
        self._buf = np.zeros(min(initial, capacity), dtype=np.int16)
        self.total = 0

    def append(self, x: np.ndarray) -> None:
        n = x.size
        if self.total + n > self._buf.size < self.capacity:
            size = self._buf.size
            while size < self.total + n and size < self.capacity:
                size *= 2
            kept = self.read(0, self.total)
            self._buf = np.zeros(min(size, self.capacity), dtype=np.int16)
            if kept.size:
                self._buf[np.arange(self.total - kept.size, self.total) % self._buf.size] = kept
        cap = self._buf.size
        if n >= cap:
            x = x[-cap:]
            start = self.total + n - cap
        else:
            start = self.total
        pos = start % cap
        first = min(x.size, cap - pos)
        self._buf[pos : pos + first] = x[:first]
        self._buf[: x.size - first] = x[first:]
        self.total += n

    def read(self, start: int, end: int) -> np.ndarray:
        cap = self._buf.size
        start = max(start, self.total - cap, 0)
        end = min(end, self.total)
        if end <= start:
            return np.zeros(0, dtype=np.int16)
        idx = np.arange(start, end) % cap
        return self._buf[idx]

    def release(self) -> None:
        self._buf = np.zeros(1, dtype=np.int16)
        self.capacity = 1


def _encode_output(samples: np.ndarray, fmt: dict[str, Any]) -> tuple[bytes, int]:
    """24 kHz int16 to the output format; returns the bytes and bytes per millisecond."""
    if fmt["type"] == "audio/pcm":
        return samples.astype("<i2").tobytes(), RATE * 2 // 1000
    narrow = soxr.resample(samples, RATE, G711_RATE) if samples.size else samples
    return bytes(_g711(fmt["type"]).encode(np.asarray(narrow, dtype=np.int16))), G711_RATE // 1000


# ---------------------------------------------------------------------------------------------
# session.update validation


def _check_keys(d: dict[str, Any], allowed: frozenset[str] | set[str], path: str) -> None:
    for key in d:
        if key not in allowed:
            raise InvalidRequest(
                f"Unknown parameter: '{path}.{key}'.",
                param=f"{path}.{key}",
                code="unknown_parameter",
            )


def _need_dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"Invalid type for '{path}': expected an object, but got {type(value).__name__}.",
            param=path,
            code="invalid_type",
        )
    return value


def _format(value: Any, path: str) -> dict[str, Any]:
    d = _need_dict(value, path)
    typ = d.get("type")
    if typ is None:
        raise InvalidRequest(
            f"Missing required parameter: '{path}.type'.",
            param=f"{path}.type",
            code="missing_required_parameter",
        )
    if typ not in FORMATS:
        raise InvalidRequest(
            f"Invalid value: '{typ}'. Supported values are: 'audio/pcm', 'audio/pcmu' and "
            "'audio/pcma'.",
            param=f"{path}.type",
        )
    if typ == "audio/pcm":
        _check_keys(d, {"type", "rate"}, path)
        rate = d.get("rate", RATE)
        if rate != RATE or isinstance(rate, bool):
            raise InvalidRequest(
                f"Invalid value: {rate!r}. Supported values are: 24000.", param=f"{path}.rate"
            )
        return {"type": typ, "rate": RATE}
    _check_keys(d, {"type"}, path)
    try:
        _g711(typ)
    except ImportError as exc:  # the G.711 module is not there in this build
        raise InvalidRequest(
            f"'{typ}' is not available in this build of the embedded agent.",
            param=f"{path}.type",
            code="unsupported_format",
            type_="server_error",
        ) from exc
    return {"type": typ}


def _number(d: dict[str, Any], key: str, path: str, lo: float, hi: float, *, integer: bool) -> None:
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


def _turn_detection(value: Any, current: dict[str, Any] | None, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    d = _need_dict(value, path)
    typ = d.get("type")
    if typ == "server_vad":
        _check_keys(d, SERVER_VAD_KEYS, path)
        _number(d, "threshold", path, 0.0, 1.0, integer=False)
        _number(d, "prefix_padding_ms", path, 0, 10_000, integer=True)
        _number(d, "silence_duration_ms", path, 0, 10_000, integer=True)
        _number(d, "idle_timeout_ms", path, 5_000, 30_000, integer=True)
        base = DEFAULT_SERVER_VAD
    elif typ == "semantic_vad":
        _check_keys(d, SEMANTIC_VAD_KEYS, path)
        if "eagerness" in d and d["eagerness"] not in SEMANTIC_SILENCE_MS:
            raise InvalidRequest(
                f"Invalid value: '{d['eagerness']}'. Supported values are: 'low', 'medium', "
                "'high' and 'auto'.",
                param=f"{path}.eagerness",
            )
        base = DEFAULT_SEMANTIC_VAD
    elif typ is None:
        raise InvalidRequest(
            f"Missing required parameter: '{path}.type'.",
            param=f"{path}.type",
            code="missing_required_parameter",
        )
    else:
        raise InvalidRequest(
            f"Invalid value: '{typ}'. Supported values are: 'server_vad' and 'semantic_vad'.",
            param=f"{path}.type",
        )
    _bool(d, "create_response", path)
    _bool(d, "interrupt_response", path)
    # Same type: a partial update of the current settings; another type: its defaults.
    merged = dict(current) if current is not None and current.get("type") == typ else dict(base)
    merged.update(d)
    return merged


def _optional_dict(value: Any, path: str, types: tuple[str, ...] | None = None) -> Any:
    if value is None:
        return None
    d = _need_dict(value, path)
    if types is not None and d.get("type") not in types:
        raise InvalidRequest(
            f"Invalid value: {d.get('type')!r}. Supported values are: "
            + ", ".join(f"'{t}'" for t in types)
            + ".",
            param=f"{path}.type",
        )
    return copy.deepcopy(d)


def _voice(value: Any, path: str) -> Any:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str) and set(value) == {"id"}:
        return dict(value)
    raise InvalidRequest(
        "Invalid value for voice: use one of " + ", ".join(VOICES) + " or {'id': 'voice_…'}.",
        param=path,
    )


def _modalities(value: Any, path: str) -> list[str]:
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


def _metadata(value: Any) -> dict[str, str] | None:
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


def merge_session(current: dict[str, Any], update: Any, *, voice_locked: bool) -> dict[str, Any]:
    """Apply a partial ``session.update`` to the effective session; raise :class:`InvalidRequest`.

    Only fields present change; ``null`` clears turn_detection, transcription and noise_reduction.
    Nothing is applied when anything is invalid.
    """
    upd = _need_dict(update, "session")
    if "type" not in upd:
        raise InvalidRequest(
            "Missing required parameter: 'session.type'.",
            param="session.type",
            code="missing_required_parameter",
        )
    if upd["type"] != "realtime":
        raise InvalidRequest(
            f"Invalid value: {upd['type']!r}. The embedded agent only runs 'realtime' sessions.",
            param="session.type",
        )
    _check_keys(upd, SESSION_KEYS, "session")
    new = copy.deepcopy(current)
    for key, value in upd.items():
        path = f"session.{key}"
        if key == "type":
            continue
        if key == "instructions":
            if value is not None and not isinstance(value, str):
                raise InvalidRequest(
                    "Invalid type for 'session.instructions'.", param=path, code="invalid_type"
                )
            new[key] = value or ""
        elif key == "model":
            if not isinstance(value, str) or not value:
                raise InvalidRequest("Invalid value for 'session.model'.", param=path)
            if value != current.get("model") and voice_locked:
                raise InvalidRequest(
                    "Cannot update the model once the model has produced audio.",
                    param=path,
                    code="cannot_update_model",
                )
            new[key] = value
        elif key == "output_modalities":
            new[key] = _modalities(value, path)
        elif key == "max_output_tokens":
            new[key] = _max_tokens(value, path)
        elif key == "tools":
            if not isinstance(value, list):
                raise InvalidRequest(
                    "Invalid type for 'session.tools': expected an array.",
                    param=path,
                    code="invalid_type",
                )
            for i, tool in enumerate(value):
                t = _need_dict(tool, f"{path}[{i}]")
                if t.get("type") not in ("function", "mcp"):
                    raise InvalidRequest(
                        f"Invalid value: {t.get('type')!r}. Supported values are: 'function' "
                        "and 'mcp'.",
                        param=f"{path}[{i}].type",
                    )
                if t["type"] == "function" and not isinstance(t.get("name"), str):
                    raise InvalidRequest(
                        f"Missing required parameter: '{path}[{i}].name'.",
                        param=f"{path}[{i}].name",
                        code="missing_required_parameter",
                    )
            new[key] = copy.deepcopy(value)
        elif key == "tool_choice":
            if isinstance(value, str):
                if value not in ("none", "auto", "required"):
                    raise InvalidRequest(
                        f"Invalid value: '{value}'. Supported values are: 'none', 'auto' and "
                        "'required'.",
                        param=path,
                    )
                new[key] = value
            else:
                new[key] = _optional_dict(value, path, ("function", "mcp"))
        elif key == "truncation":
            if value in ("auto", "disabled"):
                new[key] = value
            else:
                new[key] = _optional_dict(value, path, ("retention_ratio",))
        elif key == "audio":
            audio = _need_dict(value, path)
            _check_keys(audio, {"input", "output"}, path)
            if "input" in audio:
                inp = _need_dict(audio["input"], f"{path}.input")
                ipath = f"{path}.input"
                _check_keys(
                    inp, {"format", "noise_reduction", "transcription", "turn_detection"}, ipath
                )
                target = new["audio"]["input"]
                if "format" in inp:
                    target["format"] = _format(inp["format"], f"{ipath}.format")
                if "turn_detection" in inp:
                    target["turn_detection"] = _turn_detection(
                        inp["turn_detection"],
                        current["audio"]["input"]["turn_detection"],
                        f"{ipath}.turn_detection",
                    )
                if "transcription" in inp:
                    target["transcription"] = _optional_dict(
                        inp["transcription"], f"{ipath}.transcription"
                    )
                if "noise_reduction" in inp:
                    target["noise_reduction"] = _optional_dict(
                        inp["noise_reduction"],
                        f"{ipath}.noise_reduction",
                        ("near_field", "far_field"),
                    )
            if "output" in audio:
                out = _need_dict(audio["output"], f"{path}.output")
                opath = f"{path}.output"
                _check_keys(out, {"format", "voice", "speed"}, opath)
                target = new["audio"]["output"]
                if "format" in out:
                    target["format"] = _format(out["format"], f"{opath}.format")
                if "voice" in out:
                    voice = _voice(out["voice"], f"{opath}.voice")
                    if voice != target.get("voice") and voice_locked:
                        raise InvalidRequest(
                            "Cannot update a conversation's voice if assistant audio is present.",
                            param=f"{opath}.voice",
                            code="cannot_update_voice",
                        )
                    target["voice"] = voice
                if "speed" in out:
                    _number(out, "speed", opath, 0.25, 1.5, integer=False)
                    target["speed"] = out["speed"]
        elif key == "parallel_tool_calls":
            if not isinstance(value, bool):
                raise InvalidRequest(
                    "Invalid type for 'session.parallel_tool_calls'.",
                    param=path,
                    code="invalid_type",
                )
            new[key] = value
        elif key == "include":
            if value is not None and (
                not isinstance(value, list)
                or any(v != "item.input_audio_transcription.logprobs" for v in value)
            ):
                raise InvalidRequest("Invalid value for 'session.include'.", param=path)
            new[key] = value
        else:  # tracing, prompt, reasoning: kept as given
            new[key] = copy.deepcopy(value)
    return new


def default_session(model: str, expires_at: float) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------
# one connection


class _Response:
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
        self.task: asyncio.Task[None] | None = None


class EmbeddedSession:
    """State of one connection. Tests read ``received``, ``path``, ``query``, ``headers``."""

    def __init__(self, server: EmbeddedRealtimeServer, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        self._server = server
        self._ws = ws
        url = urlsplit(request.path)
        self.path: str = url.path
        self.raw_path: str = request.path
        self.query: dict[str, str] = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.headers: Headers = request.headers
        from gateway.realtime import embedded_preview

        self._preview = (
            embedded_preview if embedded_preview.is_preview(url.path, self.headers) else None
        )
        self.dialect = "preview" if self._preview else "ga"
        self.model: str = self.query.get("model") or self.query.get("deployment", "")
        self.received: list[dict[str, Any]] = []
        self.speech_started_at: list[float] = []  # monotonic send times (when keep_events > 0)
        self.opened_at = time.monotonic()
        self.close_code: int | None = None
        expires_at = server.expires_at
        if expires_at is None:
            expires_at = int(time.time() + (server.max_session_s or 3600))
        self.config: dict[str, Any] = default_session(self.model, expires_at)
        if self._preview is not None:
            self.config["audio"]["output"]["voice"] = "alloy"  # the preview models lack marin
        self.id: str = self.config["id"]
        self.conversation_id = new_id("conv")
        self._closed = asyncio.Event()
        self._stalled = False
        self._tasks: set[asyncio.Task[None]] = set()
        # input side
        self._ring = _Ring(RING_SECONDS * RATE)
        self._buf_start = 0  # first sample of the uncommitted input buffer
        self._pcm_carry = b""
        self._in_codec: Any = None
        self._in_resampler: Any = None
        self._vad: EnergyVad | None = None
        self._vad_offset = 0  # ring sample index where the current VAD started
        self._turn_item: str | None = None  # item id announced by speech_started
        self._turn_start_ms = 0
        # conversation
        self._items: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._audio_item_ms: dict[str, float] = {}  # assistant item -> ms of audio generated
        self._user_audio: tuple[str, np.ndarray] | None = None  # latest user audio item
        self._voice_locked = False
        self.active: _Response | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._configure_input()
        self._configure_vad()
        self._handlers: dict[str, Callable[[dict[str, Any], str | None], Awaitable[None]]] = {
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

    # -- public, for tests ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """Tasks of this session still running (none once the connection has ended)."""
        return frozenset(t for t in self._tasks if not t.done())

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        log.info("embedded_session_open", session_id=self.id, model=self.model)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                try:
                    if self._server.max_session_s is not None:
                        self._spawn(self._expire(self._server.max_session_s))
                    await self._send({"type": "session.created", "session": self.config})
                    async for message in self._ws:
                        await self._on_message(message)
                except ConnectionClosed:
                    pass
                finally:
                    for task in list(self._tasks):
                        task.cancel()
        finally:
            self.active = None
            self._ring.release()  # closed sessions stay listed for tests: keep them light
            self._user_audio = None
            self.close_code = self._ws.close_code
            self._closed.set()
            log.info("embedded_session_closed", session_id=self.id, code=self.close_code)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._tg is not None
        task = self._tg.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("embedded_session_task_failed", session_id=self.id)

    async def drop(self, code: int = 1011, reason: str = "Internal server error") -> None:
        """End the connection as a failing service does: a close frame with `code`, or for
        1006 no close frame at all (the TCP connection just goes)."""
        if code == 1006:
            self._ws.transport.abort()
        else:
            await self._ws.close(code, reason)

    def stall(self, *, pongs: bool = False) -> None:
        """Hang as a stuck service does: nothing more is sent, and the socket stays open
        until the peer gives up on it. Without ``pongs`` nothing is read either (a stuck
        process: no pong); with it, the connection stays alive and only the events stop (a
        model that stopped generating mid-answer)."""
        self._stalled = True
        if not pongs:
            self._ws.transport.pause_reading()

    async def send_raw(self, text: str) -> None:
        """A frame as is, e.g. not JSON at all (a service bug, a broken proxy)."""
        await self._ws.send(text)

    async def _expire(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        minutes = f"{seconds / 60:g}"
        await self._ws.close(1001, f"Your session hit the maximum duration of {minutes} minutes.")

    # -- sending ---------------------------------------------------------------------------

    async def _send(self, event: dict[str, Any]) -> None:
        # The frame is queued synchronously inside send(), before its first await: the order
        # in which coroutines call _send is the order on the wire.
        if self._stalled:
            return
        event = {"event_id": new_id("event"), **event}
        if self._preview is not None:
            translated = self._preview.server_to_preview(event)
            if translated is None:
                return
            event = translated
        await self._ws.send(json.dumps(event, separators=(",", ":")))

    async def _error(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        event_id: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        await self._send(
            {
                "type": "error",
                "error": {
                    "type": type_,
                    "code": code,
                    "message": message,
                    "param": param,
                    "event_id": event_id,
                },
            }
        )

    # -- receiving -------------------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self._error(
                "Binary frames are not supported: send each event as a JSON text frame.",
                code="invalid_json",
            )
            return
        try:
            event = json.loads(message)
        except ValueError as exc:
            await self._error(
                f"We could not parse the JSON of your event ({exc.msg} at position {exc.pos}).",
                code="invalid_json",
            )
            return
        if not isinstance(event, dict):
            await self._error("An event must be a JSON object.", code="invalid_json")
            return
        self._record(event)
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if self._preview is not None:
            try:
                event = self._preview.client_to_ga(event)
            except InvalidRequest as exc:
                await self._error(exc.message, code=exc.code, param=exc.param, event_id=event_id)
                return
        typ = event.get("type")
        handler = self._handlers.get(typ) if isinstance(typ, str) else None
        if handler is None:
            if typ is None:
                await self._error(
                    "Missing required parameter: 'type'.",
                    code="missing_required_parameter",
                    param="type",
                    event_id=event_id,
                )
            else:
                supported = ", ".join(f"'{t}'" for t in self._handlers)
                await self._error(
                    f"Invalid value: {typ!r}. Supported values are: {supported}.",
                    code="invalid_value",
                    param="type",
                    event_id=event_id,
                )
            return
        try:
            await handler(event, event_id)
        except InvalidRequest as exc:
            await self._error(
                exc.message, code=exc.code, param=exc.param, event_id=event_id, type_=exc.type
            )
        except ConnectionClosed:
            raise
        except Exception:
            log.exception("embedded_event_failed", session_id=self.id, type=typ)
            await self._error(
                "The server had an error while processing your event.",
                code="server_error",
                event_id=event_id,
                type_="server_error",
            )

    def _record(self, event: dict[str, Any]) -> None:
        keep = self._server.keep_events
        if keep <= 0:
            return
        self.received.append(event)
        if len(self.received) > keep:
            del self.received[: len(self.received) - keep // 2]

    # -- session.update ----------------------------------------------------------------------

    async def _on_session_update(self, event: dict[str, Any], event_id: str | None) -> None:
        if "session" not in event:
            raise InvalidRequest(
                "Missing required parameter: 'session'.",
                param="session",
                code="missing_required_parameter",
            )
        old = self.config
        new = merge_session(old, event["session"], voice_locked=self._voice_locked)
        self.config = new
        if new["audio"]["input"]["format"] != old["audio"]["input"]["format"]:
            self._configure_input()
        if new["audio"]["input"]["turn_detection"] != old["audio"]["input"]["turn_detection"]:
            self._configure_vad()
        await self._send({"type": "session.updated", "session": self.config})

    def _configure_input(self) -> None:
        fmt = self.config["audio"]["input"]["format"]["type"]
        self._pcm_carry = b""
        if fmt == "audio/pcm":
            self._in_codec = None
            self._in_resampler = None
        else:
            self._in_codec = _g711(fmt)
            self._in_resampler = soxr.ResampleStream(G711_RATE, RATE, 1, dtype="int16")

    def _configure_vad(self) -> None:
        td = self.config["audio"]["input"]["turn_detection"]
        self._turn_item = None
        if td is None:
            self._vad = None
            return
        if td["type"] == "server_vad":
            threshold = td.get("threshold", 0.5)
            padding = td.get("prefix_padding_ms", 300)
            silence = td.get("silence_duration_ms", 500)
        else:
            threshold, padding = 0.5, 300
            silence = SEMANTIC_SILENCE_MS[td.get("eagerness") or "auto"]
        self._vad = EnergyVad(RATE, threshold, padding, silence)
        self._vad_offset = self._ring.total

    # -- input audio ---------------------------------------------------------------------------

    def _decode_input(self, data: bytes) -> np.ndarray:
        if self._in_codec is None:
            data = self._pcm_carry + data
            if len(data) % 2:
                self._pcm_carry, data = data[-1:], data[:-1]
            else:
                self._pcm_carry = b""
            return np.frombuffer(data, dtype="<i2").astype(np.int16)
        narrow = np.asarray(self._in_codec.decode(data), dtype=np.int16)
        return np.asarray(self._in_resampler.resample_chunk(narrow), dtype=np.int16)

    async def _on_append(self, event: dict[str, Any], event_id: str | None) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise InvalidRequest(
                "Missing required parameter: 'audio' (base64-encoded audio bytes).",
                param="audio",
                code="missing_required_parameter",
            )
        if len(audio) > MAX_APPEND_CHARS:
            raise InvalidRequest(
                "Invalid 'audio': an append may carry at most 15 MiB.", param="audio"
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(
                "Invalid 'audio'. Expected base64-encoded audio bytes.", param="audio"
            ) from exc
        samples = self._decode_input(data)
        if samples.size == 0:
            return
        self._ring.append(samples)
        if self._vad is None:
            return
        for vad_event in self._vad.process(samples):
            if isinstance(vad_event, SpeechStarted):
                ms = vad_event.audio_start_ms + round(self._vad_offset * 1000 / RATE)
                await self._speech_started(max(ms, round(self._buf_start * 1000 / RATE)))
            elif isinstance(vad_event, SpeechStopped):
                ms = vad_event.audio_end_ms + round(self._vad_offset * 1000 / RATE)
                await self._speech_stopped(ms)

    async def _speech_started(self, audio_start_ms: int) -> None:
        self._turn_item = new_id("item")
        self._turn_start_ms = audio_start_ms
        if self._server.keep_events > 0:
            self.speech_started_at.append(time.monotonic())
        await self._send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_start_ms,
                "item_id": self._turn_item,
            }
        )
        td = self.config["audio"]["input"]["turn_detection"] or {}
        if self.active is not None and td.get("interrupt_response", True):
            await self._cancel(self.active, "turn_detected")

    async def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._turn_item or new_id("item")
        self._turn_item = None
        await self._send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": audio_end_ms,
                "item_id": item_id,
            }
        )
        audio = self._ring.read(self._turn_start_ms * RATE // 1000, audio_end_ms * RATE // 1000)
        self._buf_start = max(self._buf_start, audio_end_ms * RATE // 1000)
        await self._commit_user_audio(item_id, audio)
        td = self.config["audio"]["input"]["turn_detection"] or {}
        if td.get("create_response", True) and self.active is None:
            await self._start_response(None)

    async def _commit_user_audio(self, item_id: str, audio: np.ndarray) -> None:
        previous = self._order[-1] if self._order else None
        await self._send(
            {
                "type": "input_audio_buffer.committed",
                "item_id": item_id,
                "previous_item_id": previous,
            }
        )
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._add_item(item, previous)
        self._user_audio = (item_id, audio)
        await self._send(
            {"type": "conversation.item.added", "item": item, "previous_item_id": previous}
        )
        await self._send(
            {"type": "conversation.item.done", "item": item, "previous_item_id": previous}
        )
        if self.config["audio"]["input"]["transcription"] is not None:
            seconds = audio.size / RATE
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": f"(caller audio, {seconds:.2f} s)",
                    "usage": {"type": "duration", "seconds": round(seconds, 3)},
                }
            )

    async def _on_commit(self, event: dict[str, Any], event_id: str | None) -> None:
        audio = self._ring.read(self._buf_start, self._ring.total)
        ms = audio.size * 1000 / RATE
        if ms < MIN_COMMIT_MS:
            raise InvalidRequest(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        item_id = self._turn_item or new_id("item")
        self._turn_item = None
        if self._vad is not None:
            self._vad.reset()
        self._buf_start = self._ring.total
        await self._commit_user_audio(item_id, audio)

    async def _on_clear(self, event: dict[str, Any], event_id: str | None) -> None:
        self._buf_start = self._ring.total
        self._turn_item = None
        if self._vad is not None:
            self._vad.reset()
        await self._send({"type": "input_audio_buffer.cleared"})

    async def _on_output_audio_buffer_clear(
        self, event: dict[str, Any], event_id: str | None
    ) -> None:
        raise InvalidRequest(
            "output_audio_buffer.clear is only supported for WebRTC and SIP sessions; over "
            "WebSocket the client owns playback.",
            param="type",
        )

    # -- conversation ------------------------------------------------------------------------

    def _add_item(self, item: dict[str, Any], previous: str | None) -> None:
        item_id = item["id"]
        self._items[item_id] = item
        if previous is None or previous == (self._order[-1] if self._order else None):
            self._order.append(item_id)
        elif previous == "root":
            self._order.insert(0, item_id)
        else:
            self._order.insert(self._order.index(previous) + 1, item_id)
        while len(self._order) > MAX_ITEMS:
            old = self._order.pop(0)
            self._items.pop(old, None)
            self._audio_item_ms.pop(old, None)

    def _user_item_audio(self, item: dict[str, Any]) -> np.ndarray | None:
        content = item.get("content") or []
        for part in content:
            audio = part.get("audio") if isinstance(part, dict) else None
            if part.get("type") == "input_audio" and isinstance(audio, str):
                try:
                    data = base64.b64decode(audio, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise InvalidRequest(
                        "Invalid 'item.content.audio'. Expected base64-encoded audio bytes.",
                        param="item.content.audio",
                    ) from exc
                if self._in_codec is None:
                    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
                narrow = np.asarray(self._in_codec.decode(data), dtype=np.int16)
                return np.asarray(soxr.resample(narrow, G711_RATE, RATE), dtype=np.int16)
        return None

    async def _on_item_create(self, event: dict[str, Any], event_id: str | None) -> None:
        if "item" not in event:
            raise InvalidRequest(
                "Missing required parameter: 'item'.",
                param="item",
                code="missing_required_parameter",
            )
        item = copy.deepcopy(_need_dict(event["item"], "item"))
        typ = item.get("type")
        if typ == "message":
            role = item.get("role")
            allowed = {
                "user": ("input_text", "input_audio", "input_image"),
                "system": ("input_text",),
                "assistant": ("output_text",),
            }
            if role not in allowed:
                raise InvalidRequest(
                    f"Invalid value: {role!r}. Supported values are: 'user', 'assistant' and "
                    "'system'.",
                    param="item.role",
                )
            content = item.get("content")
            if not isinstance(content, list):
                raise InvalidRequest(
                    "Missing required parameter: 'item.content'.",
                    param="item.content",
                    code="missing_required_parameter",
                )
            for i, part in enumerate(content):
                ptype = part.get("type") if isinstance(part, dict) else None
                if ptype not in allowed[role]:
                    raise InvalidRequest(
                        f"Invalid value: {ptype!r} for a {role} message. Supported values are: "
                        + ", ".join(f"'{t}'" for t in allowed[role])
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
        previous = event.get("previous_item_id")
        if previous is not None and previous != "root" and previous not in self._items:
            raise InvalidRequest(
                f"Previous item with id '{previous}' not found.",
                param="previous_item_id",
            )
        item_id = item.get("id") or new_id("item")
        if not isinstance(item_id, str) or item_id in self._items:
            raise InvalidRequest(f"Item with id '{item_id}' already exists.", param="item.id")
        audio = self._user_item_audio(item) if typ == "message" and item["role"] == "user" else None
        item["id"] = item_id
        item["object"] = "realtime.item"
        item["status"] = "completed"
        for part in item.get("content") or []:
            part.pop("audio", None)  # audio bytes are never echoed back
            if part.get("type") == "input_audio":
                part.setdefault("transcript", None)
        previous_out = (
            previous if previous is not None else (self._order[-1] if self._order else None)
        )
        self._add_item(item, previous)
        if audio is not None and audio.size:
            self._user_audio = (item_id, audio)
        await self._send(
            {"type": "conversation.item.added", "item": item, "previous_item_id": previous_out}
        )
        await self._send(
            {"type": "conversation.item.done", "item": item, "previous_item_id": previous_out}
        )

    def _need_item(self, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            raise InvalidRequest(
                "Missing required parameter: 'item_id'.",
                param="item_id",
                code="missing_required_parameter",
            )
        item = self._items.get(item_id)
        if item is None:
            raise InvalidRequest(
                f"Conversation item with id '{item_id}' does not exist.",
                param="item_id",
                code="item_not_found",
            )
        return item_id, item

    async def _on_item_delete(self, event: dict[str, Any], event_id: str | None) -> None:
        item_id, _ = self._need_item(event)
        if self.active is not None and item_id == self.active.item_id:
            raise InvalidRequest(
                f"Item '{item_id}' belongs to the response in progress.", param="item_id"
            )
        del self._items[item_id]
        self._order.remove(item_id)
        self._audio_item_ms.pop(item_id, None)
        if self._user_audio is not None and self._user_audio[0] == item_id:
            self._user_audio = None
        await self._send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _on_item_retrieve(self, event: dict[str, Any], event_id: str | None) -> None:
        _, item = self._need_item(event)
        await self._send({"type": "conversation.item.retrieved", "item": item})

    async def _on_truncate(self, event: dict[str, Any], event_id: str | None) -> None:
        item_id, item = self._need_item(event)
        content_index = event.get("content_index")
        audio_end_ms = event.get("audio_end_ms")
        for name, value in (("content_index", content_index), ("audio_end_ms", audio_end_ms)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidRequest(
                    f"Invalid '{name}': expected a non-negative integer, but got {value!r}.",
                    param=name,
                    code="invalid_type" if not isinstance(value, int) else "invalid_value",
                )
        if item.get("type") != "message" or item.get("role") != "assistant":
            kind = (
                f"a {item.get('role')} message"
                if item.get("type") == "message"
                else item.get("type")
            )
            raise InvalidRequest(
                f"Only assistant messages can be truncated; item '{item_id}' is {kind}.",
                param="item_id",
            )
        if item_id not in self._audio_item_ms:
            raise InvalidRequest(
                f"Item '{item_id}' has no audio content to truncate.", param="item_id"
            )
        if content_index != 0:
            raise InvalidRequest(
                f"Invalid 'content_index': item '{item_id}' has one content part (index 0).",
                param="content_index",
            )
        duration = self._audio_item_ms[item_id]
        if audio_end_ms > math.ceil(duration):
            raise InvalidRequest(
                f"Audio content of {duration:.0f}ms is already shorter than {audio_end_ms}ms "
                f"(item '{item_id}').",
                param="audio_end_ms",
            )
        self._audio_item_ms[item_id] = float(audio_end_ms)
        for part in item.get("content") or []:
            if part.get("type") == "output_audio":
                part["transcript"] = ""  # the server drops the text the caller did not hear
        await self._send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": audio_end_ms,
            }
        )

    # -- responses ---------------------------------------------------------------------------

    async def _on_response_create(self, event: dict[str, Any], event_id: str | None) -> None:
        params = event.get("response")
        if params is not None:
            params = _need_dict(params, "response")
        if self.active is not None:
            raise InvalidRequest(
                "Conversation already has an active response in progress: "
                f"{self.active.id}. Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        await self._start_response(params)

    async def _on_response_cancel(self, event: dict[str, Any], event_id: str | None) -> None:
        wanted = event.get("response_id")
        resp = self.active
        if (
            resp is None
            or resp.state != _Response.STREAMING
            or (wanted is not None and wanted != resp.id)
        ):
            what = f" with id '{wanted}'" if wanted else ""
            raise InvalidRequest(
                f"Cancellation failed: no active response{what} found.",
                code="response_cancel_not_active",
            )
        await self._cancel(resp, "client_cancelled")

    def _response_audio(self) -> tuple[np.ndarray, str, float]:
        """What to play: the caller's last turn if it is the last thing said (or the server's
        fixed ``answer``), else the chime."""
        last = self._order[-1] if self._order else None
        if self._user_audio is not None and self._user_audio[0] == last:
            heard_ms = self._user_audio[1].size * 1000 / RATE
            if self._server.answer is not None:
                return self._server.answer[0], self._server.answer[1], heard_ms
            audio = self._user_audio[1]
            return audio, ECHO_TRANSCRIPT, heard_ms
        return chime(), CHIME_TRANSCRIPT, 0.0

    async def _start_response(self, params: dict[str, Any] | None) -> None:
        # Runs in the reader task only, so nothing can cancel the response half-announced.
        if params is None and self._server.function_calls:
            await self._call_function(*self._server.function_calls.pop(0))
            return
        params = params or {}
        cfg = self.config
        modality = cfg["output_modalities"][0]
        if "output_modalities" in params:
            modality = _modalities(params["output_modalities"], "response.output_modalities")[0]
        fmt = cfg["audio"]["output"]["format"]
        voice = cfg["audio"]["output"]["voice"]
        out = _need_dict(params.get("audio") or {}, "response.audio").get("output")
        if out is not None:
            out = _need_dict(out, "response.audio.output")
            if "format" in out:
                fmt = _format(out["format"], "response.audio.output.format")
            if "voice" in out:
                voice = _voice(out["voice"], "response.audio.output.voice")
        audio, transcript, input_ms = self._response_audio()
        chunks: list[tuple[str, float]] = []
        if modality == "audio":
            data, per_ms = _encode_output(audio, fmt)
            step = per_ms * CHUNK_MS
            chunks = [
                (
                    base64.b64encode(data[i : i + step]).decode("ascii"),
                    len(data[i : i + step]) / per_ms,
                )
                for i in range(0, len(data), step)
            ]
            self._voice_locked = True
        else:
            transcript = TEXT_REPLY
        resp = _Response(
            modality=modality,
            fmt=fmt,
            voice=voice,
            chunks=chunks,
            transcript=transcript,
            input_audio_ms=input_ms,
            metadata=_metadata(params.get("metadata")),
        )
        self.active = resp
        await self._send(
            {"type": "response.created", "response": self._response_obj(resp, "in_progress")}
        )
        await self._send(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 0.06},
                    {"name": "tokens", "limit": 40000, "remaining": 35904, "reset_seconds": 6.144},
                ],
            }
        )
        previous = self._order[-1] if self._order else None
        item = {
            "id": resp.item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        self._add_item(item, previous)
        if modality == "audio":
            self._audio_item_ms[resp.item_id] = 0.0
        await self._send(
            {"type": "conversation.item.added", "item": item, "previous_item_id": previous}
        )
        await self._send(
            {
                "type": "response.output_item.added",
                "response_id": resp.id,
                "output_index": 0,
                "item": item,
            }
        )
        part = (
            {"type": "audio", "transcript": ""}
            if modality == "audio"
            else {"type": "text", "text": ""}
        )
        await self._send({"type": "response.content_part.added", **self._ids(resp), "part": part})
        delta_type = (
            "response.output_audio_transcript.delta"
            if modality == "audio"
            else "response.output_text.delta"
        )
        await self._send({"type": delta_type, **self._ids(resp), "delta": resp.transcript})
        resp.task = self._spawn(self._stream(resp))

    async def _call_function(self, name: str, arguments: str) -> None:
        """A response whose only output is a function call, as the service streams one."""
        cfg = self.config
        resp = _Response(
            modality="audio",
            fmt=cfg["audio"]["output"]["format"],
            voice=cfg["audio"]["output"]["voice"],
            chunks=[],
            transcript="",
            input_audio_ms=0.0,
            metadata=None,
        )
        call_id = new_id("call")
        item: dict[str, Any] = {
            "id": resp.item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            "name": name,
            "arguments": "",
        }
        ids = {"response_id": resp.id, "item_id": resp.item_id, "output_index": 0}
        previous = self._order[-1] if self._order else None
        self._add_item(item, previous)
        await self._send(
            {"type": "response.created", "response": self._response_obj(resp, "in_progress")}
        )
        await self._send(
            {"type": "response.output_item.added", "response_id": resp.id, "output_index": 0,
             "item": item}
        )  # fmt: skip
        await self._send(
            {"type": "response.function_call_arguments.delta", **ids, "call_id": call_id,
             "delta": arguments}
        )  # fmt: skip
        await self._send(
            {"type": "response.function_call_arguments.done", **ids, "call_id": call_id,
             "name": name, "arguments": arguments}
        )  # fmt: skip
        item = {**item, "status": "completed", "arguments": arguments}
        self._items[resp.item_id] = item
        await self._send(
            {"type": "response.output_item.done", "response_id": resp.id, "output_index": 0,
             "item": item}
        )  # fmt: skip
        await self._send({"type": "conversation.item.done", "item": item})
        done = self._response_obj(resp, "completed", output=[item])
        await self._send({"type": "response.done", "response": done})

    @staticmethod
    def _ids(resp: _Response) -> dict[str, Any]:
        return {
            "response_id": resp.id,
            "item_id": resp.item_id,
            "output_index": 0,
            "content_index": 0,
        }

    async def _stream(self, resp: _Response) -> None:
        loop = asyncio.get_running_loop()
        speed = self._server.burst_speed
        t0 = loop.time()
        sent_ms = 0.0
        for delta, ms in resp.chunks:
            if resp.state != _Response.STREAMING:
                return
            resp.audio_ms += ms
            if resp.item_id in self._audio_item_ms:
                self._audio_item_ms[resp.item_id] = resp.audio_ms
            await self._send(
                {"type": "response.output_audio.delta", **self._ids(resp), "delta": delta}
            )
            sent_ms += ms
            delay = t0 + sent_ms / 1000 / speed - loop.time() if math.isfinite(speed) else 0.0
            await asyncio.sleep(max(0.0, delay))
        if resp.state != _Response.STREAMING:
            return
        resp.state = _Response.COMPLETING
        await self._finish(resp, "completed", None)

    async def _cancel(self, resp: _Response, reason: str) -> None:
        if resp.state != _Response.STREAMING:
            return
        resp.state = _Response.COMPLETING  # the stream task sends nothing from now on
        await self._finish(resp, "cancelled", reason)

    async def _finish(self, resp: _Response, status: str, reason: str | None) -> None:
        ids = self._ids(resp)
        if resp.modality == "audio":
            await self._send(
                {
                    "type": "response.output_audio_transcript.done",
                    **ids,
                    "transcript": resp.transcript,
                }
            )
            await self._send({"type": "response.output_audio.done", **ids})
            part = {"type": "audio", "transcript": resp.transcript}
            content = [{"type": "output_audio", "transcript": resp.transcript}]
        else:
            await self._send({"type": "response.output_text.done", **ids, "text": resp.transcript})
            part = {"type": "text", "text": resp.transcript}
            content = [{"type": "output_text", "text": resp.transcript}]
        await self._send({"type": "response.content_part.done", **ids, "part": part})
        item = self._items.get(resp.item_id) or {"id": resp.item_id}
        item.update(
            {
                "object": "realtime.item",
                "type": "message",
                "role": "assistant",
                "status": "completed" if status == "completed" else "incomplete",
                "content": content,
            }
        )
        await self._send(
            {
                "type": "response.output_item.done",
                "response_id": resp.id,
                "output_index": 0,
                "item": item,
            }
        )
        idx = self._order.index(resp.item_id) if resp.item_id in self._order else 0
        previous = self._order[idx - 1] if idx > 0 else None
        await self._send(
            {"type": "conversation.item.done", "item": item, "previous_item_id": previous}
        )
        resp.state = _Response.DONE
        if self.active is resp:
            self.active = None
        done = self._response_obj(resp, status, reason=reason, output=[item])
        await self._send({"type": "response.done", "response": done})

    def _response_obj(
        self,
        resp: _Response,
        status: str,
        *,
        reason: str | None = None,
        output: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "object": "realtime.response",
            "id": resp.id,
            "status": status,
            "status_details": None,
            "output": output or [],
            "conversation_id": self.conversation_id,
            "output_modalities": [resp.modality],
            "max_output_tokens": self.config["max_output_tokens"],
            "audio": {"output": {"format": resp.format, "voice": resp.voice}},
            "usage": None,
            "metadata": resp.metadata,
        }
        if status == "cancelled":
            obj["status_details"] = {"type": "cancelled", "reason": reason}
        if status != "in_progress":
            text_in = 20 + len(self.config["instructions"]) // 4
            audio_in = math.ceil(resp.input_audio_ms / 100)  # about 10 tokens per second heard
            text_out = max(1, len(resp.transcript) // 4)
            audio_out = math.ceil(resp.audio_ms / 50)  # about 20 tokens per second spoken
            obj["usage"] = {
                "total_tokens": text_in + audio_in + text_out + audio_out,
                "input_tokens": text_in + audio_in,
                "output_tokens": text_out + audio_out,
                "input_token_details": {
                    "text_tokens": text_in,
                    "audio_tokens": audio_in,
                    "image_tokens": 0,
                    "cached_tokens": 0,
                    "cached_tokens_details": {
                        "text_tokens": 0,
                        "audio_tokens": 0,
                        "image_tokens": 0,
                    },
                },
                "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
            }
        return obj


# ---------------------------------------------------------------------------------------------
# the server


class EmbeddedRealtimeServer:
    """A loopback GA Realtime server that answers every caller turn with the caller's own words.

    ``refuse_status``, ``api_key`` and ``max_session_s`` are read at each handshake or session
    start, so a test may change them between connections. ``keep_events`` bounds
    ``EmbeddedSession.received`` (0 records nothing: use that when running as the gateway's agent).
    ``answer`` = (24 kHz int16 audio, transcript) answers every caller turn with that instead of
    the echo (a long answer to talk over, in tests); the greeting stays the chime.
    ``function_calls`` = [(name, arguments JSON), ...]: the next caller turns are answered, one
    each, by a call of that function instead of audio (tests of tools); the response the client
    asks for afterwards (response.create) is the usual one.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        refuse_status: int | None = None,
        burst_speed: float = 4.0,
        max_session_s: float | None = None,
        retry_after_s: int = 1,
        keep_events: int = 10_000,
        answer: tuple[np.ndarray, str] | None = None,
        function_calls: Sequence[tuple[str, str]] = (),
    ) -> None:
        if not burst_speed > 0:
            raise ValueError(f"burst_speed must be > 0, got {burst_speed}")
        if refuse_status is not None:
            http.HTTPStatus(refuse_status)  # ValueError when it is not an HTTP status
        if max_session_s is not None and max_session_s <= 0:
            raise ValueError(f"max_session_s must be > 0, got {max_session_s}")
        self.host = host
        self.port = port
        self.api_key = api_key
        self.refuse_status = refuse_status
        self.burst_speed = burst_speed
        self.max_session_s = max_session_s
        # When set, session.created announces this expires_at (epoch seconds) whatever the
        # real limit: a service whose clock is off, or one that means harm (tests).
        self.expires_at: float | None = None
        self.retry_after_s = retry_after_s
        self.keep_events = keep_events
        self.answer = answer
        self.function_calls = list(function_calls)
        self.sessions: list[EmbeddedSession] = []
        self._server: Server | None = None

    @property
    def url(self) -> str:
        """The GA base URL (Azure's /openai/v1/realtime)."""
        if self._server is None:
            raise RuntimeError("the embedded Realtime server is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{PATHS[0]}"

    @property
    def preview_url(self) -> str:
        """The preview base URL (Azure's /openai/realtime)."""
        from gateway.realtime.embedded_preview import PREVIEW_PATH

        return self.url.removesuffix(PATHS[0]) + PREVIEW_PATH

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=20,
            ping_timeout=20,
            max_size=MAX_APPEND_CHARS + 1024 * 1024,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("embedded_realtime_listening", url=self.url)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> EmbeddedRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- handshake ---------------------------------------------------------------------------

    def _refuse(
        self, connection: ServerConnection, status: int, message: str | None = None
    ) -> Response:
        code, default = REFUSALS.get(status, (str(status), http.HTTPStatus(status).phrase))
        if message is None:
            message = default.format(retry_after=self.retry_after_s)
        body = {"error": {"code": code, "message": message}}
        response = connection.respond(status, json.dumps(body) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        if status == 429:
            response.headers["Retry-After"] = str(self.retry_after_s)
        return response

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if self.refuse_status is not None:
            return self._refuse(connection, self.refuse_status)
        from gateway.realtime import embedded_preview as preview

        path = url.path.rstrip("/")
        if path not in PATHS and path != preview.PREVIEW_PATH:
            return self._refuse(
                connection,
                404,
                f"Resource not found: {url.path} (use {PATHS[0]}?model=<deployment>).",
            )
        if self.api_key is not None and not self._authorized(request, query):
            return self._refuse(connection, 401)
        if path == preview.PREVIEW_PATH:
            problem = preview.handshake_problem(query)
            if problem:
                return self._refuse(connection, 400, problem)
        elif not query.get("model", [""])[0]:
            return self._refuse(connection, 400)
        return None

    def _authorized(self, request: Request, query: dict[str, list[str]]) -> bool:
        assert self.api_key is not None
        expected = self.api_key.encode()
        offered = [request.headers.get("api-key", ""), *query.get("api-key", [])]
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            offered.append(auth[7:].strip())
        return any(hmac.compare_digest(key.encode(), expected) for key in offered if key)

    async def _handler(self, ws: ServerConnection) -> None:
        session = EmbeddedSession(self, ws)
        self.sessions.append(session)
        closed = [s for s in self.sessions if s.closed]
        for old in closed[: max(0, len(closed) - KEEP_CLOSED_SESSIONS)]:
            self.sessions.remove(old)
        await session.run()
