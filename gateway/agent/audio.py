"""The embedded agent's audio: formats, the input ring, decoding, encoding and the chime (sans-I/O).

A session keeps its audio as 24 kHz int16. G.711 sessions are converted at the edges with the
media package's streaming :class:`~gateway.media.resample.Resampler`, at ``HQ``: the filter
``soxr.resample`` used before (its default quality), fed through 32-bit integers so the output
is rounded, not dithered (24 -> 8 kHz, 1 kHz sine: 92.6 dB SNR against 82.5 dB for
``soxr.resample`` on int16, same output length). The echo tests correlate what comes back with
what went in, so faithful audio here is what they rely on.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from gateway.media.rates import MODEL_RATE, TELEPHONE_RATE
from gateway.media.resample import Resampler
from gateway.media.vad import EnergyVad, SpeechStarted, VadEvent

__all__ = [
    "CHUNK_MS",
    "G711_RATE",
    "RATE",
    "InputAudio",
    "InputDecoder",
    "Ring",
    "chime",
    "decode_item_audio",
    "encode_chunks",
    "g711_codec",
    "resample_all",
]

RATE = MODEL_RATE  # internal rate: the session's audio is kept as 24 kHz int16
G711_RATE = TELEPHONE_RATE
CHUNK_MS = 100  # one response.output_audio.delta
RING_SECONDS = 60  # input audio kept for turns
QUALITY = "HQ"  # the filter soxr.resample used before: see the module docstring


def g711_codec(fmt_type: str) -> Any:
    """The G.711 codec for ``audio/pcmu`` or ``audio/pcma`` (ImportError when not built in)."""
    # Imported lazily: pcm sessions need none of it, and a build may leave it out.
    from gateway.media.g711 import codec_by_name

    return codec_by_name("PCMU" if fmt_type == "audio/pcmu" else "PCMA")


def resample_all(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """A whole signal at another rate (one stream, flushed): int16 in, contiguous int16 out."""
    if not samples.size:
        return np.zeros(0, dtype=np.int16)
    r = Resampler(in_rate, out_rate, QUALITY)
    return np.concatenate([r.process(np.ascontiguousarray(samples, dtype=np.int16)), r.flush()])


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


class Ring:
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


class InputDecoder:
    """The input format's bytes to 24 kHz int16, as a stream (a G.711 filter keeps state, and
    a pcm16 sample split across two appends is carried over)."""

    def __init__(self, fmt_type: str) -> None:
        self.fmt_type = fmt_type
        self._carry = b""
        self._codec: Any = None
        self._resampler: Resampler | None = None
        if fmt_type != "audio/pcm":
            self._codec = g711_codec(fmt_type)
            self._resampler = Resampler(G711_RATE, RATE, QUALITY)

    def decode(self, data: bytes) -> np.ndarray:
        if self._resampler is None:
            data = self._carry + data
            if len(data) % 2:
                self._carry, data = data[-1:], data[:-1]
            else:
                self._carry = b""
            return np.frombuffer(data, dtype="<i2").astype(np.int16)
        narrow = np.asarray(self._codec.decode(data), dtype=np.int16)
        return self._resampler.process(narrow).copy()  # a strided view: own it


class InputAudio:
    """The input audio buffer: what came in (a ring), where the uncommitted part starts, and the
    VAD that finds the caller's turns in it. Positions are ms on the input audio's timeline."""

    def __init__(self) -> None:
        self.ring = Ring(RING_SECONDS * RATE)
        self.start = 0  # first sample of the uncommitted input buffer
        self.decoder = InputDecoder("audio/pcm")
        self.vad: EnergyVad | None = None
        self._vad_offset = 0  # ring sample index where the current VAD started

    def set_format(self, fmt_type: str) -> None:
        self.decoder = InputDecoder(fmt_type)

    def set_vad(self, threshold: float, padding_ms: int, silence_ms: int) -> None:
        self.vad = EnergyVad(RATE, threshold, padding_ms, silence_ms)
        self._vad_offset = self.ring.total

    def no_vad(self) -> None:
        self.vad = None

    def append(self, data: bytes) -> list[VadEvent]:
        """Decode and keep; returns the VAD's turn edges (place each with ``edge_ms``)."""
        samples = self.decoder.decode(data)
        if samples.size == 0:
            return []
        self.ring.append(samples)
        return [] if self.vad is None else self.vad.process(samples)

    def edge_ms(self, event: VadEvent) -> int:
        """Where a turn edge is on the input timeline (a start never before the buffer's)."""
        offset_ms = round(self._vad_offset * 1000 / RATE)
        if isinstance(event, SpeechStarted):
            return max(event.audio_start_ms + offset_ms, round(self.start * 1000 / RATE))
        return event.audio_end_ms + offset_ms

    def take_turn(self, start_ms: int, end_ms: int) -> np.ndarray:
        """A turn the VAD found; the buffer is committed up to its end."""
        self.start = max(self.start, end_ms * RATE // 1000)
        return self.ring.read(start_ms * RATE // 1000, end_ms * RATE // 1000)

    def pending(self) -> np.ndarray:
        """What ``input_audio_buffer.commit`` would commit."""
        return self.ring.read(self.start, self.ring.total)

    def clear(self) -> None:
        """Commit or clear: the buffer starts again here and the VAD forgets its state."""
        self.start = self.ring.total
        if self.vad is not None:
            self.vad.reset()

    def release(self) -> None:
        self.ring.release()


def decode_item_audio(data: bytes, fmt_type: str) -> np.ndarray:
    """A whole ``input_audio`` content part (already base64-decoded) as 24 kHz int16."""
    if fmt_type == "audio/pcm":
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
    narrow = np.asarray(g711_codec(fmt_type).decode(data), dtype=np.int16)
    return resample_all(narrow, G711_RATE, RATE)


def _encode_output(samples: np.ndarray, fmt_type: str) -> tuple[bytes, int]:
    """24 kHz int16 to the output format; returns the bytes and bytes per millisecond."""
    if fmt_type == "audio/pcm":
        return samples.astype("<i2").tobytes(), RATE * 2 // 1000
    narrow = resample_all(samples, RATE, G711_RATE)
    return bytes(g711_codec(fmt_type).encode(narrow)), G711_RATE // 1000


def encode_chunks(samples: np.ndarray, fmt_type: str) -> list[tuple[str, float]]:
    """The audio as ``response.output_audio.delta`` payloads: (base64, ms of audio in it)."""
    data, per_ms = _encode_output(samples, fmt_type)
    step = per_ms * CHUNK_MS
    return [
        (base64.b64encode(data[i : i + step]).decode("ascii"), len(data[i : i + step]) / per_ms)
        for i in range(0, len(data), step)
    ]
