"""Echo suppression on the caller's audio: the agent must not hear itself and stop talking.

A caller on a speakerphone (or behind a poor 2-wire hybrid) sends the agent's own voice back,
some 10-20 dB quieter and 50-300 ms later. The service's VAD takes that for the caller
talking over the agent, and the agent interrupts itself.

This is the classic suppressor of ITU-T G.164, without an adaptive filter: while the agent
is talking (any frame sent within the echo tail), caller audio that is quieter than the
loudest of those frames minus the echo return loss can only be echo, and is muted. Louder
audio is the caller talking over the agent (double talk): it passes, and the path stays
open for a hangover so that the quieter ends of the caller's words are not chopped off.
"""

from __future__ import annotations

import math

import numpy as np

HANGOVER_MS = 200


def mean_square(pcm: np.ndarray) -> float:
    return float(np.square(pcm, dtype=np.float64).mean()) if len(pcm) else 0.0


class EchoSuppressor:
    """Sans-I/O: `far_end` for every frame the pacer sends, `near_end` for every caller frame."""

    def __init__(self, echo_loss_db: float, tail_ms: int, frame_ms: int = 20) -> None:
        self._far = np.zeros(math.ceil(tail_ms / frame_ms) + 1)  # mean squares, a ring
        self._next = 0
        self._loss = 10.0 ** (-echo_loss_db / 10.0)
        self._hangover_frames = math.ceil(HANGOVER_MS / frame_ms)
        self._open = 0
        self.suppressed_frames = 0

    def far_end(self, frame: np.ndarray | None) -> None:
        """The pacer sent `frame` (None: silence)."""
        self._far[self._next] = 0.0 if frame is None else mean_square(frame)
        self._next = (self._next + 1) % len(self._far)

    def near_end(self, pcm: np.ndarray) -> bool:
        """True: pass this caller frame; False: it is only echo, mute it."""
        reference = float(self._far.max())
        if reference == 0.0:
            return True  # the agent has been silent for longer than the echo tail
        if mean_square(pcm) > reference * self._loss:
            self._open = self._hangover_frames
            return True
        if self._open:
            self._open -= 1
            return True
        self.suppressed_frames += 1
        return False
