"""What a call sends to its Realtime session, and what waits for the next one.

Client events are written to the current session at once. While a new session takes over
(:meth:`Outbox.hold`), and for a send that meets a socket just closed, they are kept instead,
in order and bounded (the oldest go first: 3 s of the caller's audio), and the next session
gets them first, right after the conversation replayed to it (:meth:`Outbox.hand_over`).
"""

from __future__ import annotations

import contextlib
from collections import deque

from websockets.exceptions import ConnectionClosed

from .client import RealtimeSession

PENDING_EVENTS = 150  # 3 s of 20 ms appends held while a new session opens


class Outbox:
    """The link's sends: straight to the session, or kept for the next one."""

    def __init__(self, limit: int = PENDING_EVENTS) -> None:
        self._pending: deque[str] = deque(maxlen=limit)
        self.holding = False  # sends are kept while a new session takes over

    def hold(self) -> None:
        """Keep every send from now on, until :meth:`hand_over`."""
        self.holding = True

    async def send(self, session: RealtimeSession, text: str) -> None:
        """Send one event; never fails on a dropped socket (the link's events decide)."""
        if self.holding:
            self._pending.append(text)
            return
        try:
            await session.send(text)
        except ConnectionClosed:
            self._pending.append(text)

    def send_now(self, session: RealtimeSession, text: str, max_backlog: int) -> bool:
        """Write one event at once (RealtimeSession.send_now); False when the socket is
        backed up by more than ``max_backlog`` bytes and it was dropped."""
        if self.holding:
            self._pending.append(text)
            return True
        try:
            return session.send_now(text, max_backlog)
        except ConnectionClosed:
            self._pending.append(text)
            return True

    async def hand_over(self, new: RealtimeSession) -> None:
        """Send what was kept to the new session, in order; then send straight again. A
        drop on the way keeps the rest (the link's reader sees the new session close)."""
        with contextlib.suppress(ConnectionClosed):
            while self._pending:
                await new.send(self._pending[0])
                self._pending.popleft()
        self.holding = False
