"""Local pre-emption of barge-in: hear the caller here, before the service says so.

The service's ``speech_started`` comes 100-500 ms after the caller starts talking (its VAD
needs some speech, then the event crosses the network). An energy VAD on the caller's 8 kHz
audio, at the gateway, hears them within ``min_speech_ms``. The bridge then holds playback
(silence, its place kept) and waits ``confirm_ms`` for the service: confirmed, it is a normal
barge-in; not confirmed (a cough, a door), playback resumes where it stopped and nothing of
the answer is lost.
"""

from __future__ import annotations

import numpy as np

from ..media.rates import TELEPHONE_RATE
from ..media.vad import EnergyVad, SpeechStarted

RATE = TELEPHONE_RATE
RESET_SILENCE_MS = 300  # silence after which a new onset can pre-empt again


class LocalBargeIn:
    """Sans-I/O: feed the caller's audio; True when the caller has just started talking."""

    def __init__(self, threshold: float, min_speech_ms: int, confirm_ms: int) -> None:
        self.confirm_s = confirm_ms / 1000
        self._vad = EnergyVad(
            RATE,
            threshold,
            prefix_padding_ms=0,
            silence_duration_ms=RESET_SILENCE_MS,
            min_speech_ms=min_speech_ms,
        )

    def onset(self, pcm: np.ndarray) -> bool:
        return any(isinstance(event, SpeechStarted) for event in self._vad.process(pcm))
