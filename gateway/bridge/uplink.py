"""The caller's audio on its way to the model: recorded, echo-suppressed, watched by the
gateway's own VAD, and put in the session's format.

Its own object so the bridge only wires it: the bridge calls :meth:`CallerAudio.convert` from
the RTP socket's callback, once per packet, and shows it each frame played to the caller
(``CallerAudio.echo.far_end``, what the echo suppressor compares against).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import AgentConfig
from ..media.g711 import G711
from ..media.minphase import MinPhaseResampler
from ..media.rates import MODEL_RATE, TELEPHONE_RATE
from .echo import EchoSuppressor
from .local_vad import LocalBargeIn
from .recording import Recording


class CallerAudio:
    def __init__(
        self,
        codec: G711,
        passthrough: bool,
        agent: AgentConfig,
        ptime_ms: int,
        recording: Recording | None,
        on_onset: Callable[[], None],
    ) -> None:
        """``passthrough``: the session takes G.711 as is; ``on_onset``: the local VAD heard
        the caller start speaking."""
        self.codec = codec
        self.passthrough = passthrough
        echo, local = agent.echo_suppression, agent.local_barge_in
        self.echo = EchoSuppressor(echo.echo_loss_db, echo.tail_ms, ptime_ms) if echo else None
        self.local = (
            LocalBargeIn(
                local.level,
                local.min_speech_ms,
                local.confirm_ms,
                local.detector,
                local.below_caller_db,
            )
            if local
            else None
        )
        self.recording = recording
        self._on_onset = on_onset
        self._unconfirmed = 0
        self._up = MinPhaseResampler(TELEPHONE_RATE, MODEL_RATE)  # no hold-back: minphase.py
        # Nothing to look at or change: the payload goes to the model as it came.
        self._as_is = passthrough and self.echo is None and self.local is None and not recording

    @property
    def confirm_s(self) -> float:
        """How long a local barge-in holds playback unconfirmed (0: no local VAD)."""
        return self.local.confirm_s if self.local is not None else 0.0

    def convert(self, payload: bytes, talking: bool, unconfirmed: int = 0) -> bytes:
        """The caller's G.711 in the session's format, past echo suppression and local VAD
        (which listens only while the agent is ``talking``: only then can it cut it off;
        ``unconfirmed``: local holds the service did not confirm so far, in the call)."""
        if self._as_is:
            return payload
        if self.local is not None and unconfirmed > self._unconfirmed:
            self._unconfirmed = unconfirmed
            self.local.unconfirmed()
        pcm = self.codec.decode(payload)
        if self.recording is not None:
            self.recording.caller(pcm)
        if self.echo is not None and not self.echo.near_end(pcm):
            pcm = np.zeros_like(pcm)
            payload = bytes([self.codec.silence]) * len(payload)
        if self.local is not None and self.local.onset(pcm, talking):
            self._on_onset()
        return payload if self.passthrough else self._up.process(pcm).tobytes()
