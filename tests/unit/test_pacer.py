"""The shared pacer: one timer, one packet per period for every member, failures kept apart."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gateway.media import pacer as pacer_module
from gateway.media.pacer import Pacer


class Member:
    def __init__(self, fail_at: int | None = None) -> None:
        self.ticks = 0
        self.fail_at = fail_at
        self.reached = asyncio.Event()
        self.want = 0

    def tick(self, skipped: int, late: bool) -> None:
        self.ticks += 1 + skipped
        if self.ticks == self.fail_at:
            raise RuntimeError("boom")
        if self.ticks >= self.want:
            self.reached.set()

    async def until(self, ticks: int) -> None:
        self.want = ticks
        if self.ticks < ticks:
            self.reached.clear()
            await asyncio.wait_for(self.reached.wait(), 5)


async def test_members_share_one_schedule_and_one_task() -> None:
    a, b = Member(), Member()
    pacer = Pacer.for_ptime(20)
    runs = [asyncio.create_task(pacer.run(a))]
    await a.until(1)
    assert Pacer.for_ptime(20) is pacer and Pacer.for_ptime(30) is not pacer
    runs.append(asyncio.create_task(Pacer.for_ptime(20).run(b)))
    await a.until(5)
    await b.until(5)
    assert abs(a.ticks - b.ticks) <= 1  # same grid: they tick together
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "pacer"]
    assert len(tasks) == 1
    pacer.leave(a)
    await asyncio.wait_for(runs[0], 5)  # leave() ends that member's run, not the other's
    ticks = b.ticks
    await b.until(ticks + 3)
    pacer.leave(b)
    await asyncio.wait_for(runs[1], 5)
    await asyncio.wait_for(tasks[0], 5)  # no member left: the timer stops
    assert not [k for k in pacer_module._PACERS if k[0] is asyncio.get_running_loop()]


async def test_a_failing_member_ends_alone() -> None:
    pacer = Pacer.for_ptime(20)
    bad, good = Member(fail_at=3), Member()
    bad_run = asyncio.create_task(pacer.run(bad))
    good_run = asyncio.create_task(pacer.run(good))
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(bad_run, 5)
    await good.until(good.ticks + 3)
    assert not good_run.done()
    good_run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await good_run


class Stamped(Member):
    """Records when each tick ran; can poll the pacer from inside its own tick."""

    def __init__(self, pacer: Pacer | None = None) -> None:
        super().__init__()
        self.at: list[float] = []
        self.pacer = pacer

    def tick(self, skipped: int, late: bool) -> None:
        now = asyncio.get_running_loop().time()
        self.at.append(now)
        if self.pacer is not None:
            self.pacer.poll(now + 1.0)  # re-entrant: must not tick again from within a tick
        super().tick(skipped, late)


async def test_a_due_tick_runs_from_a_poll_and_the_timer_does_not_repeat_it() -> None:
    pacer = Pacer.for_ptime(20)
    member = Stamped()
    run = asyncio.create_task(pacer.run(member))
    await member.until(1)
    assert pacer.clock is not None
    due = pacer.clock.deadline
    pacer.poll(due - 0.001)  # not yet due: nothing
    assert member.ticks == 1
    pacer.poll(due)  # due: the tick runs here, before the timer's wake-up
    assert member.ticks == 2 and pacer.clock.deadline == pytest.approx(due + 0.02)
    await member.until(3)  # the timer's next tick is the next period's, not this one again
    assert member.at[2] >= due + 0.02 - 1e-6
    pacer.leave(member)
    await asyncio.wait_for(run, 5)


async def test_a_poll_from_inside_a_tick_does_not_tick_twice() -> None:
    pacer = Pacer.for_ptime(20)
    member = Stamped(pacer)
    run = asyncio.create_task(pacer.run(member))
    await member.until(3)
    # Each tick polled with a time far past the next deadline; none ran a nested tick.
    gaps = [b - a for a, b in zip(member.at, member.at[1:], strict=False)]
    assert all(g > 0.01 for g in gaps), gaps  # a nested tick would come 0 ms after its parent
    pacer.leave(member)
    await asyncio.wait_for(run, 5)


async def test_calls_are_spread_over_the_slots_of_a_period() -> None:
    pacer = Pacer.for_ptime(20)
    seen: dict[int, list[float]] = {}

    class Slotted(Member):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

        def tick(self, skipped: int, late: bool) -> None:
            # Inside a tick, ``due`` is already the next slot's deadline: the same for every
            # call ticked together, one slot (2 ms) apart from one tick to the next.
            seen.setdefault(self.index, []).append(pacer.due)
            super().tick(skipped, late)

    members = [Slotted(i) for i in range(2 * pacer_module.SLOTS)]
    runs = [asyncio.create_task(pacer.run(m)) for m in members]
    for m in members:
        await m.until(3)
    groups: dict[float, list[int]] = {}
    for index, dues in seen.items():
        groups.setdefault(round(dues[1], 6), []).append(index)
        # One packet per period for each call, on its own slot's grid.
        assert dues[2] - dues[1] == pytest.approx(0.02)
    assert sorted(map(len, groups.values())) == [2] * pacer_module.SLOTS
    instants = sorted(groups)
    assert [b - a for a, b in itertools.pairwise(instants)] == pytest.approx(
        [0.002] * (pacer_module.SLOTS - 1)
    )
    for m in members:
        pacer.leave(m)
    await asyncio.wait_for(asyncio.gather(*runs), 5)


async def test_the_lateness_of_each_tick_with_calls_is_reported() -> None:
    pacer = Pacer.for_ptime(20)
    heard: list[float] = []
    pacer.on_lateness = heard.append
    member = Member()
    run = asyncio.create_task(pacer.run(member))
    await member.until(4)
    # One report per tick of the member's slot (empty slots are skipped), never negative.
    assert len(heard) == member.ticks and all(0 <= late < 5 for late in heard)
    pacer.leave(member)
    await asyncio.wait_for(run, 5)
