"""One pacer per process and ptime: one timer sends every call's packets, in slots.

A timer per call costs a task wake-up per packet (asyncio.sleep: a timer handle, a future, a
task step): at 200 calls that is 10,000 wake-ups a second for work that takes microseconds.
One shared schedule (``SlotClock``) wakes ``SLOTS`` times per ptime instead, and each wake-up
sends for the calls of one slot: every call gets exactly one packet per ptime, on its slot's
grid, 2 ms apart from the next slot's at 20 ms.

Why slots rather than every call at once: a packet leaves after those sent before it in the
same burst, so its jitter is the variation of the whole burst before it. Measured at 200
calls in one burst: 3.8 ms p50, 9.3 ms p99 (the machine's other work slows some bursts down
by half), so the last calls of the burst heard up to 5 ms of jitter (gap p99 22.5-23 ms). A
slot of 20 calls is a tenth of that, and the rest of the loop (the callers' packets, the
model's audio) runs between slots instead of waiting behind one long burst.

The timer alone is not enough under load: its wake-up waits behind every callback that was
ready before it in the same loop iteration (a hundred calls' RTP arriving together is several
milliseconds of work), and every caller hears that wait as jitter. So the media callbacks
(the caller's RTP, the model's audio) ``poll`` the pacer first, and a tick that is due runs
right there, before the packet that polled: the media clock waits for one callback at most.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Protocol

from .alarm import Alarm
from .clock import SlotClock

__all__ = ["Paced", "Pacer"]

MAX_CATCH_UP_S = 0.2  # a loop stalled longer than this skips ahead instead of bursting
SLOTS = 10  # wake-ups per ptime, each sending for the calls of one slot


class Paced(Protocol):
    def tick(self, skipped: int, late: bool) -> None:
        """Send this ptime's packet; ``skipped`` packets before it were not sent (a stall)."""
        ...


_PACERS: dict[tuple[asyncio.AbstractEventLoop, float], Pacer] = {}


class Pacer:
    """The shared schedule of one ptime on one event loop."""

    def __init__(self, period_s: float, slots: int = SLOTS) -> None:
        self.period = period_s
        self.slots = slots
        self.clock: SlotClock | None = None
        self._members: dict[Paced, asyncio.Future[None]] = {}
        self._slot: dict[Paced, int] = {}
        self._groups: list[list[Paced]] = [[] for _ in range(slots)]
        self._task: asyncio.Task[None] | None = None
        self._ticking = False
        self._alarm: Alarm | None = None
        # Told how late each tick with calls ran after its deadline (the gateway's metrics).
        self.on_lateness: Callable[[float], None] | None = None
        self.due = math.inf  # when the next tick is due (the clock's deadline, kept at hand)

    @classmethod
    def for_ptime(cls, ptime_ms: int) -> Pacer:
        """The running pacer of this loop for ``ptime_ms``, or a new one (runs once joined)."""
        return _PACERS.get((asyncio.get_running_loop(), ptime_ms / 1000)) or cls(ptime_ms / 1000)

    async def run(self, member: Paced) -> None:
        """Tick ``member`` once per period until cancelled, or until its tick raises."""
        done = asyncio.get_running_loop().create_future()
        self._members[member] = done
        slot = min(range(self.slots), key=lambda i: len(self._groups[i]))
        self._slot[member] = slot
        self._groups[slot].append(member)
        if self._task is None:
            loop = asyncio.get_running_loop()
            _PACERS[(loop, self.period)] = self
            self._task = loop.create_task(self._run(), name="pacer")
        try:
            await done
        finally:
            self._members.pop(member, None)
            slot = self._slot.pop(member, None)
            if slot is not None:
                self._groups[slot].remove(member)

    def leave(self, member: Paced) -> None:
        """``member`` is done (its socket closed): its ``run`` returns."""
        done = self._members.get(member)
        if done is not None and not done.done():
            done.set_result(None)

    def poll(self, now: float) -> None:
        """Tick now if a packet is due (from a media callback: see the module's docstring)."""
        if now >= self.due and not self._ticking:
            self._tick(now)

    def _tick(self, now: float) -> None:
        clock = self.clock
        assert clock is not None
        self._ticking = True  # a member's tick that polls again must not tick twice
        try:
            lateness = now - clock.deadline
            slot, skipped, late = clock.tick(now)
            for _ in range(self.slots - 1):  # no wake-up for a slot without calls
                if self._groups[clock.next_slot]:
                    break
                clock.tick(clock.deadline)
            self.due = clock.deadline
            if self._alarm is not None:
                self._alarm.move(self.due)
            if self.on_lateness is not None and self._groups[slot]:
                self.on_lateness(lateness)
            members = self._members
            for member in tuple(self._groups[slot]):
                done = members[member]
                if done.done():
                    continue
                try:
                    member.tick(skipped, late)
                except Exception as exc:  # one call's failure is that call's alone
                    done.set_exception(exc)
        finally:
            self._ticking = False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self.clock = SlotClock(loop.time(), self.period, self.slots, MAX_CATCH_UP_S)
        self.due = clock.deadline
        alarm = self._alarm = Alarm(loop)
        try:
            while self._members:
                # Ticks run from polls move the alarm on: it fires only when none came first.
                if self.due > loop.time():
                    await alarm.wait_until(self.due)
                now = loop.time()
                if now >= self.due:
                    self._tick(now)
        finally:
            self.clock = None
            self._alarm = None
            self.due = math.inf
            alarm.close()
            self._task = None
            _PACERS.pop((loop, self.period), None)
            for done in self._members.values():
                if not done.done():
                    done.cancel()
