"""A call's audio for the console: listen-in (both sides as stereo PCM16) and level meters.

Tapped where the recorder taps it: the caller's audio as it arrives (``CallerAudio``), the
agent's frame as the pacer sends it (``CallBridge.next_frame``). A call carries a tap only
while someone listens or watches its meters (``CallBridge.tap`` is None otherwise: the media
path pays one ``is None`` test). Every buffer is bounded: a listener that does not keep up
loses its oldest audio, never holds up the pacer.
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

from ..bridge.recording import stereo_frame

MAX_CALLER_BACKLOG_FRAMES = 10  # caller audio ahead of the pacer's clock beyond this is dropped
MAX_LISTENER_FRAMES = 50  # one second waits for a listener's socket, then the oldest goes
WAKE_EVERY_FRAMES = 5  # a listener is sent 100 ms at a time


class Listener:
    """One listener's stereo frames (caller left, agent right), waiting to be sent."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.frames: deque[bytes] = deque(maxlen=MAX_LISTENER_FRAMES)
        self.ready = asyncio.Event()
        self.sent = 0
        self.closed = False

    def take(self) -> bytes:
        data = b"".join(self.frames)
        self.frames.clear()
        self.ready.clear()
        return data


class CallTap:
    """Collects a call's two sides for its listeners, and their peak levels for its meters."""

    def __init__(self, frame_samples: int, rate: int) -> None:
        self.frame_samples = frame_samples
        self.rate = rate
        self.listeners: set[Listener] = set()
        self.watchers = 0  # pages showing this call's meters
        self._caller: deque[np.ndarray] = deque(maxlen=MAX_CALLER_BACKLOG_FRAMES)
        self._stereo = np.zeros((frame_samples, 2), dtype="<i2")
        self.caller_peak = 0
        self.agent_peak = 0

    @property
    def active(self) -> bool:
        return bool(self.listeners) or self.watchers > 0

    def caller(self, pcm: np.ndarray) -> None:
        """The caller's audio as it arrives (the call's rate)."""
        if self.watchers and len(pcm):
            self.caller_peak = max(self.caller_peak, int(np.abs(pcm, dtype=np.int32).max()))
        if self.listeners:
            self._caller.append(pcm)

    def agent(self, frame: np.ndarray | None) -> None:
        """One pacer tick: the frame the agent sent (None: silence)."""
        if self.watchers and frame is not None and len(frame):
            self.agent_peak = max(self.agent_peak, int(np.abs(frame, dtype=np.int32).max()))
        if not self.listeners:
            return
        stereo_frame(self._stereo, self._caller, frame)
        data = self._stereo.tobytes()
        for listener in self.listeners:
            listener.frames.append(data)
            if len(listener.frames) >= WAKE_EVERY_FRAMES:
                listener.ready.set()

    def levels(self) -> dict[str, float]:
        """Peak levels since the last call (0..1), then start again."""
        levels = {"caller": self.caller_peak / 32768, "agent": self.agent_peak / 32768}
        self.caller_peak = self.agent_peak = 0
        return {side: round(value, 3) for side, value in levels.items()}
