"""The server events of every session a link opened, in one bounded queue.

Each session gets a pump that puts its events on the queue tagged with the session, and last
how it closed (:class:`Closed`, with its close code), so the link can skip a replaced
session's late events and tell a drop from a clean close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from . import protocol as rt
from .client import RealtimeSession

EVENT_QUEUE = 64


@dataclass(slots=True)
class Closed:
    """A session's socket closed (after its last event)."""

    code: int


class SessionFeed:
    """One queue for the events of every session; `spawn` runs the pumps as the link's tasks."""

    def __init__(
        self, spawn: Callable[[Awaitable[None], str], None], log: Any, stall_timeout_s: float
    ) -> None:
        self._spawn = spawn
        self.log = log
        self._stall_s = stall_timeout_s
        self._queue: asyncio.Queue[tuple[RealtimeSession, rt.ServerEvent | Closed]]
        self._queue = asyncio.Queue(EVENT_QUEUE)

    def release(self) -> None:
        """The link closed: its spawn is let go (a session started after this is closed)."""
        self._spawn = _closed

    def start(self, session: RealtimeSession) -> None:
        """Pump a session's events into the queue until it closes."""
        self._spawn(self._pump(session), f"pump-{session.id}")

    async def put(self, session: RealtimeSession, event: rt.ServerEvent) -> None:
        """An event of the link's own, as if `session` had sent it (a cut-off answer)."""
        await self._queue.put((session, event))

    async def get(self) -> tuple[RealtimeSession, rt.ServerEvent | Closed]:
        return await self._queue.get()

    async def _pump(self, session: RealtimeSession) -> None:
        """One session's events into the queue, then how it closed."""
        try:
            async for event in session.events():
                await self._queue.put((session, event))
            code = session.close_code or 1006
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            if exc.rcvd is None and exc.sent is not None and "keepalive" in exc.sent.reason:
                self.log.warning(
                    "realtime.stalled",
                    session_id=session.id,
                    waited_for="keepalive pong",
                    stall_timeout_s=self._stall_s,
                )
        await self._queue.put((session, Closed(code)))


def _closed(coro: Awaitable[None], name: str) -> None:
    """A pump after the link closed: never run."""
    close = getattr(coro, "close", None)
    if close is not None:
        close()
