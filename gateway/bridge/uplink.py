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
from ..console.tap import CallTap
from ..media.codecs import Codec
from ..media.conversion import converter
from ..media.rates import MODEL_RATE
from .echo import EchoSuppressor
from .local_vad import LocalBargeIn
from .recording import Recording


class CallerAudio:
    def __init__(
        self,
        codec: Codec,
        passthrough: bool,
        agent: AgentConfig,
        ptime_ms: int,
        recording: Recording | None,
        on_onset: Callable[[], None],
        screen: Callable[[np.ndarray], bool] | None = None,
    ) -> None:
        """``codec``: the call's opened codec, whose rate the audio is at until it is
        converted to 24 kHz (``conversion.py``: G.711 8 kHz, G.722 16 kHz, Opus as it is);
        ``passthrough``: the session takes G.711 as is; ``on_onset``: the local VAD heard
        the caller start speaking; ``screen``: sees the caller's PCM first (answering-machine
        detection) and says whether it goes on to the model."""
        self.codec = codec
        self.passthrough = passthrough
        echo = agent.echo_suppression
        local = agent.local_barge_in if agent.barge_in else None  # nothing to pre-empt
        self.echo = EchoSuppressor(echo.echo_loss_db, echo.tail_ms, ptime_ms) if echo else None
        self.local = (
            LocalBargeIn(
                local.level,
                local.min_speech_ms,
                local.confirm_ms,
                local.detector,
                codec.rate,
                local.below_caller_db,
            )
            if local
            else None
        )
        self.recording = recording
        self.tap: CallTap | None = None  # the console listens or shows meters
        self.heard: Callable[[np.ndarray], None] | None = None  # the timeline (not G.711)
        self._on_onset = on_onset
        self.screen = screen
        self._up = converter(codec.rate, MODEL_RATE)  # G.711: no hold-back, see minphase.py
        self._lost = 0  # RTP clock ticks lost before the next packet, to conceal from it
        self._unconfirmed = 0
        # Nothing to look at or change: the payload goes to the model as it came.
        self._as_is = (
            passthrough
            and self.echo is None
            and self.local is None
            and not recording
            and not screen
        )

    @property
    def confirm_s(self) -> float:
        """How long a local barge-in holds playback unconfirmed (0: no local VAD)."""
        return self.local.confirm_s if self.local is not None else 0.0

    def release(self) -> None:
        """The call is over: the onset callback (the bridge's) is let go."""
        self._on_onset = _no_onset

    def lost(self, ticks: int) -> None:
        """The receiver saw a gap (G.722, Opus): concealed with the packet that follows."""
        self._lost += ticks

    def convert(self, payload: bytes, talking: bool, unconfirmed: int = 0) -> bytes:
        """The caller's audio in the session's format, past echo suppression and local VAD
        (which listens only while the agent is ``talking``: only then can it cut it off;
        ``unconfirmed``: local holds the service did not confirm so far, in the call)."""
        if self._as_is and self.tap is None:
            return payload
        if self.local is not None and unconfirmed > self._unconfirmed:
            self._unconfirmed = unconfirmed
            self.local.unconfirmed()
        pcm = self._decode_after_loss(payload) if self._lost else self.codec.decode(payload)
        if self.recording is not None:
            self.recording.caller(pcm)
        if self.heard is not None:
            self.heard(pcm)
        if self.tap is not None:
            self.tap.caller(pcm)
            if self._as_is:
                return payload
        if self.screen is not None and not self.screen(pcm):
            return b""
        if self.echo is not None and not self.echo.near_end(pcm):
            pcm = np.zeros_like(pcm)
            if self.passthrough and self.codec.silence is not None:
                payload = bytes([self.codec.silence]) * len(payload)
        if self.local is not None and self.local.onset(pcm, talking):
            self._on_onset()
        if self.passthrough:
            return payload
        return (pcm if self._up is None else self._up.process(pcm)).tobytes()

    def _decode_after_loss(self, payload: bytes) -> np.ndarray:
        """The lost audio, then the packet: concealed first, while the decoder is where the
        loss left it (Opus reads the lost frame's FEC from this packet; G.722 fades out the
        last frame heard)."""
        ticks, self._lost = self._lost, 0
        lost = self.codec.conceal(ticks, payload)
        return np.concatenate((lost, self.codec.decode(payload)))


def _no_onset() -> None:
    """An onset after the call ended: nobody to tell."""
