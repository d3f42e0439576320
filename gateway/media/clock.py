"""The pacer's schedule, sans-I/O: packet n is due at ``start + n * period``, exactly.

Deadlines come from the packet count, never from "last wake-up + period", so a late wake-up
costs that one packet a little jitter and never shifts the packets after it: ten minutes of
call are 30,000 packets of 20 ms, give or take the one in flight.  A short stall is made up
by sending the overdue packets at once; after a long one (``max_catch_up_s``) the overdue
packets are skipped rather than burst, and the RTP timestamp jumps by as much, so it stays
true to the wall clock (RFC 3550 §5.1: the timestamp reflects the sampling instant).
"""

from __future__ import annotations

__all__ = ["PacketClock", "SlotClock"]


class PacketClock:
    def __init__(self, start: float, period_s: float, max_catch_up_s: float = 0.2) -> None:
        if period_s <= 0:
            raise ValueError(f"period must be > 0, got {period_s}")
        self.start = start
        self.period = period_s
        self.max_catch_up = max_catch_up_s
        self.ticks = 0  # packets sent or skipped so far
        self.late = 0  # packets sent more than one period after their deadline
        self.skipped = 0

    @property
    def deadline(self) -> float:
        """When the next packet is due."""
        return self.start + self.ticks * self.period

    def tick(self, now: float) -> int:
        """A packet goes out at ``now`` (at or after ``deadline``); returns how many packets
        before it were skipped because the caller was stalled too long (usually 0)."""
        lateness = now - self.deadline
        skip = 0
        if lateness > self.period:
            self.late += 1
            if lateness > self.max_catch_up:
                skip = int(lateness / self.period)
                self.skipped += skip
        self.ticks += skip + 1
        return skip


class SlotClock:
    """``slots`` interleaved schedules of one period: slot ``k``'s packet ``n`` is due at
    ``start + (n * slots + k) * period / slots``. The pacer sends for one slot's calls per
    tick (see ``pacer.py``); each slot keeps ``PacketClock``'s guarantees: no drift, short
    stalls caught up, long ones skipped, and every skipped packet counted for its own slot.
    """

    def __init__(
        self, start: float, period_s: float, slots: int, max_catch_up_s: float = 0.2
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.period = period_s
        self.slots = slots
        self._clock = PacketClock(start, period_s / slots, max_catch_up_s)
        self._missed = [0] * slots  # each slot's skipped packets, told at its next tick

    @property
    def deadline(self) -> float:
        """When the next slot's packets are due."""
        return self._clock.deadline

    @property
    def next_slot(self) -> int:
        return self._clock.ticks % self.slots

    def tick(self, now: float) -> tuple[int, int, bool]:
        """The next slot's packets go out at ``now``: returns that slot, how many of its
        packets before these were skipped (a long stall), and whether they are late by more
        than one period."""
        clock = self._clock
        late = now - clock.deadline > self.period
        first = clock.ticks
        skipped = clock.tick(now)
        if skipped:
            rounds, rest = divmod(skipped, self.slots)
            for k in range(self.slots):
                self._missed[k] += rounds
            for j in range(first, first + rest):
                self._missed[j % self.slots] += 1
        slot = (clock.ticks - 1) % self.slots
        missed, self._missed[slot] = self._missed[slot], 0
        return slot, missed, late
