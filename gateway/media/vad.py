"""An energy voice-activity detector on the audio timeline (sans-I/O).

The embedded agent (:mod:`gateway.agent`) uses it to play the part of the Realtime service's
``server_vad``: it finds the caller's turns and reports them with the same fields the service
sends (``input_audio_buffer.speech_started.audio_start_ms``, ``speech_stopped.audio_end_ms``).
The bridge's local VAD (:mod:`gateway.bridge.local_vad`) uses it too, which is why it lives in
``media/``, the layer both may import.

Time is the audio itself, never the wall clock: the detector counts the samples it is fed, so a
test may push a minute of audio in a millisecond and still get exact event times. Input may come
in chunks of any size; analysis runs on fixed 10 ms windows aligned to the start of the stream, so
the result does not depend on how the stream was cut.

Decision per 10 ms window: its RMS level in dBFS (window mean removed, so a DC offset is not
"speech"), compared with one fixed threshold derived from the Realtime ``threshold`` (0..1):

    threshold_dbfs = -70 + 40 * threshold

    threshold  0.0 -> -70 dBFS   (anything above dither or idle-channel noise is speech)
    threshold  0.5 -> -50 dBFS   (the Realtime default: 10 dB above a -60 dBFS noisy line,
                                  about 25-30 dB below ordinary telephone speech, whose
                                  active level is around -26 dBFS (ITU-T P.56 / G.711 practice))
    threshold  1.0 -> -30 dBFS   (only loud, close speech)

As with the service, a higher threshold needs louder audio. The 0 dBFS reference is a full-scale
int16 square wave (RMS 32767), so a full-scale sine reads -3 dBFS.

Turn logic:

* Speech starts when loud windows add up to ``min_speech_ms`` (default 100 ms), with quiet gaps
  inside that run of at most ``max_gap_ms`` (default 50 ms); a click or a short burst resets after
  the gap and never starts a turn. The event fires when that much speech has been heard, but it
  reports the onset (first loud window) minus ``prefix_padding_ms``, clamped at 0.
* Speech stops after ``silence_duration_ms`` without a loud window; the event fires then, and it
  reports the end of the last loud window (where the speech really ended, without the trailing
  silence that was needed to be sure of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "WINDOW_MS",
    "EnergyVad",
    "SpeechStarted",
    "SpeechStopped",
    "VadEvent",
    "dbfs_to_threshold",
    "threshold_to_dbfs",
]

WINDOW_MS = 10
_FLOOR_DB = -70.0
_SPAN_DB = 40.0
_FULL_SCALE = 32767.0


def threshold_to_dbfs(threshold: float) -> float:
    """Map the Realtime ``turn_detection.threshold`` (0..1) to a window level in dBFS."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    return _FLOOR_DB + _SPAN_DB * threshold


def dbfs_to_threshold(dbfs: float) -> float:
    """The inverse of :func:`threshold_to_dbfs`, clamped to 0..1."""
    return min(1.0, max(0.0, (dbfs - _FLOOR_DB) / _SPAN_DB))


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int
    """Onset of speech minus the prefix padding, clamped at 0; ms from the start of all audio."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int
    """End of the last window that held speech; ms from the start of all audio."""


VadEvent = SpeechStarted | SpeechStopped


class EnergyVad:
    """Energy VAD on 10 ms windows. Feed int16 mono samples with :meth:`process`."""

    def __init__(
        self,
        sample_rate: int = 24000,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
        *,
        min_speech_ms: int = 100,
        max_gap_ms: int = 50,
    ) -> None:
        if sample_rate <= 0 or sample_rate % (1000 // WINDOW_MS) != 0:
            raise ValueError(f"sample_rate must be a positive multiple of 100, got {sample_rate}")
        for name, value in (
            ("prefix_padding_ms", prefix_padding_ms),
            ("silence_duration_ms", silence_duration_ms),
            ("min_speech_ms", min_speech_ms),
            ("max_gap_ms", max_gap_ms),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.threshold_dbfs = threshold_to_dbfs(threshold)
        self.prefix_padding_ms = int(prefix_padding_ms)
        self.silence_duration_ms = int(silence_duration_ms)
        self.min_speech_ms = int(min_speech_ms)
        self.max_gap_ms = int(max_gap_ms)
        self._win = sample_rate * WINDOW_MS // 1000
        # Compare mean squares, not dB, per window: (rms/FS)^2 >= 10^(dB/10).
        self._ms_threshold = (_FULL_SCALE**2) * 10.0 ** (self.threshold_dbfs / 10.0)
        self._pending = np.empty(0, dtype=np.int16)
        self._windows = 0  # complete windows analysed so far
        self._in_speech = False
        # candidate onset (before speech is confirmed)
        self._cand_start: int | None = None  # window index of the first loud window
        self._cand_loud = 0  # loud windows in the candidate run
        self._cand_last_loud = 0  # window index of the last loud window in the run
        # during speech
        self._last_loud_end = 0  # window index just after the last loud window

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio analysed so far (whole windows only)."""
        return self._windows * WINDOW_MS

    def reset(self) -> None:
        """Forget any speech in progress (no event); the timeline keeps counting."""
        self._in_speech = False
        self._cand_start = None
        self._cand_loud = 0

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        """Analyse more audio; returns the events it completes, in order."""
        x = np.asarray(samples)
        if x.dtype != np.int16:
            raise TypeError(f"expected int16 samples, got {x.dtype}")
        x = x.reshape(-1)
        if self._pending.size:
            x = np.concatenate((self._pending, x))
        n = x.size // self._win
        self._pending = x[n * self._win :].copy()
        if n == 0:
            return []
        frames = x[: n * self._win].astype(np.float64).reshape(n, self._win)
        frames -= frames.mean(axis=1, keepdims=True)
        loud = (frames * frames).mean(axis=1) >= self._ms_threshold
        events: list[VadEvent] = []
        base = self._windows
        for k in range(n):
            self._step(base + k, bool(loud[k]), events)
        self._windows = base + n
        return events

    def _step(self, i: int, loud: bool, events: list[VadEvent]) -> None:
        if self._in_speech:
            if loud:
                self._last_loud_end = i + 1
            elif (i + 1 - self._last_loud_end) * WINDOW_MS >= self.silence_duration_ms:
                self._in_speech = False
                events.append(SpeechStopped(self._last_loud_end * WINDOW_MS))
            return
        if loud:
            if self._cand_start is None:
                self._cand_start = i
                self._cand_loud = 0
            self._cand_loud += 1
            self._cand_last_loud = i
            if self._cand_loud * WINDOW_MS >= max(self.min_speech_ms, WINDOW_MS):
                self._in_speech = True
                self._last_loud_end = i + 1
                start = max(0, self._cand_start * WINDOW_MS - self.prefix_padding_ms)
                self._cand_start = None
                events.append(SpeechStarted(start))
        elif self._cand_start is not None and (i - self._cand_last_loud) * WINDOW_MS > (
            self.max_gap_ms
        ):
            self._cand_start = None
            self._cand_loud = 0
