"""A call's rollover: the next Realtime session opened ahead of the current one's end.

A session ends at the service's limit (Azure 30 min, OpenAI 60). A margin ahead of it this
object opens the next session in parallel (the spare) and, at the first pause (no one
speaking, no answer due), asks the link to switch to it, so the caller hears no gap and no two
answers; at the latest a quarter margin before the end it asks anyway. A reconnect may take
the spare instead (:meth:`take_spare`), and each new session starts the count anew
(:meth:`replaced`). The times are :class:`ReplacementPolicy`'s; the switch is the link's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .client import RealtimeConnectError, RealtimeSession
from .replacement import ReplacementPolicy

ROLLOVER_RETRY_S = 2.0

Opener = Callable[[], Awaitable[RealtimeSession]]
# (the current session, when it ends); and the link's switch from one session to the spare.
Current = Callable[[], tuple[RealtimeSession, float]]
Switch = Callable[[RealtimeSession, RealtimeSession], Awaitable[None]]


class Rollover:
    """The spare session, the pause it waits for, and the loop that times them."""

    def __init__(
        self, opener: Opener, policy: ReplacementPolicy, current: Current, switch: Switch, log: Any
    ) -> None:
        self._open = opener
        self._policy = policy
        self._current = current
        self._switch = switch
        self.log = log
        self.spare: RealtimeSession | None = None
        self._pause = asyncio.Event()
        self._pause.set()
        self._replaced = asyncio.Event()  # set each time a new session takes over

    def release(self) -> None:
        """The link closed: its callbacks are let go (nothing runs them any more)."""
        self._current = _closed_current
        self._switch = _closed_switch

    @property
    def at_pause(self) -> bool:
        return self._pause.is_set()

    def pause(self, at_pause: bool) -> None:
        """Whether the current session is at a pause (from its turns)."""
        if at_pause:
            self._pause.set()
        else:
            self._pause.clear()

    def replaced(self) -> None:
        """A new session took over (reconnect or rollover): a new count, and at a pause."""
        self._pause.set()
        self._replaced.set()

    def take_spare(self) -> RealtimeSession | None:
        """The spare, now the caller's (a reconnect uses it rather than open one)."""
        spare, self.spare = self.spare, None
        return spare

    def claim(self, new: RealtimeSession) -> bool:
        """True when `new` is still the spare, now taken; False when a reconnect used it."""
        if self.spare is not new:
            return False
        self.spare = None
        return True

    async def run(self) -> None:
        """Before each session's end: open the next one, switch at a pause."""
        while True:
            session, ends_at = self._current()
            self._replaced.clear()
            opens_at, force_at = self._policy.rollover_times(session.opened_at, ends_at)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, opens_at - time.monotonic())):
                    await self._replaced.wait()  # a reconnect starts the count anew
            new = await self._open_spare(session, force_at)
            if new is None:
                # Replaced meanwhile, or no spare could be opened: then the session ends at its
                # limit and the reconnect path takes over. Either way, start on the next one.
                await self._replaced.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, force_at - time.monotonic())):
                    await self._pause.wait()
            await self._switch(session, new)

    async def _open_spare(
        self, session: RealtimeSession, give_up_at: float
    ) -> RealtimeSession | None:
        while self._current()[0] is session:
            try:
                self.spare = await self._open()
                return self.spare
            except RealtimeConnectError as exc:
                self.log.warning("realtime.rollover_open_failed", reason=exc.reason)
                if time.monotonic() + ROLLOVER_RETRY_S >= give_up_at:
                    return None
                await asyncio.sleep(ROLLOVER_RETRY_S)
        return None


def _closed_current() -> tuple[RealtimeSession, float]:
    raise RuntimeError("the link is closed")


async def _closed_switch(old: RealtimeSession, new: RealtimeSession) -> None:
    raise RuntimeError("the link is closed")
