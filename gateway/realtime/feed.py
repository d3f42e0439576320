"""The server events of the sessions a link opened, read where the link reads them.

The link's reader takes the current session's events straight from its socket: no pump task
and no queue between them, so an event costs no task hop, and a call's suspended state while
it waits is one chain of awaits, not two (the young generation the garbage collector scans
holds every call's: gc_pauses.py). Each event comes tagged with its session, and last how the
session closed (:class:`Closed`, with its close code), so the link can skip a replaced
session's late events and tell a drop from a clean close.

A replacement (``start``) takes effect at the reader's next read: one already waiting on the
replaced session returns with its next event or its close, which the link starts at once and
bounds (``link.REPLACED_CLOSE_S``), and is skipped. Events of the link's own (a cut-off
answer, ``put``) come first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from . import protocol as rt
from .client import RealtimeSession


@dataclass(slots=True)
class Closed:
    """A session's socket closed (after its last event)."""

    code: int


class SessionFeed:
    """The events of the current session, and the link's own first."""

    def __init__(self, log: Any, stall_timeout_s: float) -> None:
        self.log = log
        self._stall_s = stall_timeout_s
        self._own: deque[tuple[RealtimeSession, rt.ServerEvent]] = deque()
        self._current: tuple[RealtimeSession, AsyncIterator[rt.ServerEvent]] | None = None

    def release(self) -> None:
        """The link closed: nothing of its sessions is held any more."""
        self._own.clear()
        self._current = None

    def start(self, session: RealtimeSession) -> None:
        """Read ``session``'s events from now on (the one read so far is let go)."""
        self._current = (session, session.events())

    def put(self, session: RealtimeSession, event: rt.ServerEvent) -> None:
        """An event of the link's own, as if `session` had sent it (a cut-off answer)."""
        self._own.append((session, event))

    async def get(self) -> tuple[RealtimeSession, rt.ServerEvent | Closed]:
        if self._own:
            return self._own.popleft()
        assert self._current is not None, "no session started"
        session, events = self._current
        try:
            return session, await events.__anext__()
        except StopAsyncIteration:
            return session, Closed(session.close_code or 1006)
        except ConnectionClosed as exc:
            if exc.rcvd is None and exc.sent is not None and "keepalive" in exc.sent.reason:
                self.log.warning(
                    "realtime.stalled",
                    session_id=session.id,
                    waited_for="keepalive pong",
                    stall_timeout_s=self._stall_s,
                )
            return session, Closed(exc.rcvd.code if exc.rcvd else 1006)
