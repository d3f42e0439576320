"""Music on hold: what a caller hears while a warm transfer rings the human.

The configured WAV (PCM16, mono, any rate) is read once and resampled to each call's codec
rate (soxr, whole file at once: it is small and read off the media path); without one, a
soft tone pattern (two quiet notes, then a pause) so the caller knows the line is alive.
The source loops, one frame per pacer tick.
"""

from __future__ import annotations

import functools
import wave
from pathlib import Path

import numpy as np
import soxr

MAX_SECONDS = 600  # a longer file is cut: it loops anyway
TONE_LEVEL = 0.06  # of full scale: about -24 dBFS, soft


class HoldMusicError(ValueError):
    """The WAV cannot be used (not PCM16 mono, unreadable)."""


@functools.lru_cache(maxsize=8)
def read_wav(path: str) -> tuple[np.ndarray, int]:
    """The file's samples and rate (cached: read once per path). HoldMusicError if unusable."""
    try:
        with wave.open(str(Path(path)), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise HoldMusicError(f"{path}: music on hold must be PCM16 mono")
            rate = wav.getframerate()
            frames = wav.readframes(min(wav.getnframes(), rate * MAX_SECONDS))
    except (OSError, EOFError, wave.Error) as exc:
        raise HoldMusicError(f"{path}: {exc}") from None
    samples = np.frombuffer(frames, dtype="<i2").astype(np.int16)
    if samples.size == 0:
        raise HoldMusicError(f"{path}: no audio")
    return samples, rate


def tone_pattern(rate: int) -> np.ndarray:
    """The default: 440 Hz then 554 Hz for 0.4 s each, softly faded, then 1.2 s of silence."""
    out = []
    for freq in (440.0, 554.37):
        t = np.arange(int(rate * 0.4)) / rate
        note = np.sin(2 * np.pi * freq * t) * np.hanning(t.size)
        out.append(note * TONE_LEVEL * 32767)
    out.append(np.zeros(int(rate * 1.2)))
    return np.concatenate(out).astype(np.int16)


def hold_samples(path: str | None, rate: int) -> np.ndarray:
    """The music at `rate`, the tone pattern when no file is configured."""
    if path is None:
        return tone_pattern(rate)
    samples, source_rate = read_wav(path)
    if source_rate == rate:
        return samples
    resampled = soxr.resample(samples.astype(np.float32), source_rate, rate)
    return np.clip(resampled, -32768, 32767).astype(np.int16)


class HoldMusic:
    """A frame source for the pacer (``RtpStream.switch_source``): the music, looped."""

    def __init__(self, samples: np.ndarray, frame_samples: int) -> None:
        if samples.size < frame_samples:
            samples = np.resize(samples, frame_samples)
        self._samples = samples
        self._frame = frame_samples
        self._at = 0

    def next_frame(self) -> np.ndarray:
        end = self._at + self._frame
        if end <= self._samples.size:
            frame = self._samples[self._at : end]
            self._at = end % self._samples.size
        else:
            frame = np.concatenate(
                (self._samples[self._at :], self._samples[: end - self._samples.size])
            )
            self._at = end - self._samples.size
        return np.ascontiguousarray(frame, dtype=np.int16)
