"""Local pre-emption of barge-in: hear the caller here, before the service says so.

The service's ``speech_started`` comes 100-500 ms after the caller starts talking (its VAD
needs some speech, then the event crosses the network). A detector on the caller's 8 kHz
audio, at the gateway, hears them within ``min_speech_ms``. The bridge then holds playback
(silence, its place kept) and waits ``confirm_ms`` for the service: confirmed, it is a normal
barge-in; not confirmed (a cough, a door), playback resumes where it stopped and nothing of
the answer is lost.

Two detectors: ``voice`` (:mod:`.voice_onset`: a level gate, then WebRTC's speech detector,
so noise does not pause the agent; its gate follows the caller's own level, learned while the
agent is silent) and ``energy`` (any audio above the threshold). Either runs
only while the agent is talking: that is the only time an onset does anything, so the CPU
and the false pauses are paid for that time alone.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..media.minphase import MinPhaseResampler
from ..media.rates import TELEPHONE_RATE
from ..media.vad import EnergyVad, SpeechStarted, threshold_to_dbfs
from .voice_onset import VoiceOnset

RATE = TELEPHONE_RATE
RESET_SILENCE_MS = 300  # silence after which a new onset can pre-empt again


class LocalBargeIn:
    """Sans-I/O: feed the caller's audio; True when the caller has just started talking."""

    def __init__(
        self,
        threshold: float,
        min_speech_ms: int,
        confirm_ms: int,
        detector: Literal["voice", "energy"] = "energy",
        rate: int = RATE,
        below_caller_db: float | None = None,
    ) -> None:
        """``rate``: the caller's audio rate, the codec's (the voice detector hears it at
        8 kHz: a wideband call's audio is brought down to it first)."""
        self.confirm_s = confirm_ms / 1000
        self.detector = detector
        self._energy: EnergyVad | None = None
        self._voice: VoiceOnset | None = None
        self._down = None
        if detector == "voice":
            self._voice = VoiceOnset(threshold_to_dbfs(threshold), min_speech_ms, below_caller_db)
            if rate != RATE:
                self._down = MinPhaseResampler(rate, RATE)
        elif detector == "energy":
            self._energy = EnergyVad(
                rate,
                threshold,
                prefix_padding_ms=0,
                silence_duration_ms=RESET_SILENCE_MS,
                min_speech_ms=min_speech_ms,
            )
        else:
            raise ValueError(f"unknown detector {detector!r}")
        self._talking = False

    def onset(self, pcm: np.ndarray, talking: bool = True) -> bool:
        """`pcm`: the caller's next audio; `talking`: the agent is being heard now. While it
        is not, the voice detector only learns the caller's level (no onset) and the next
        onset starts afresh."""
        if not talking:
            if self._talking:
                self._reset()
            self._talking = False
            if self._voice is not None:
                self._voice.listen(pcm)
            return False
        self._talking = True
        if self._voice is not None:
            return self._voice.process(pcm if self._down is None else self._down.process(pcm))
        assert self._energy is not None
        return any(isinstance(event, SpeechStarted) for event in self._energy.process(pcm))

    def unconfirmed(self) -> None:
        """The service did not confirm the last onset: it was noise (the voice detector
        learns it as the line's background)."""
        if self._voice is not None:
            self._voice.unconfirmed()

    def _reset(self) -> None:
        if self._voice is not None:
            self._voice.reset()
        if self._energy is not None:
            self._energy.reset()
