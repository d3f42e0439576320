"""The pacer's schedule on a simulated clock: no drift over a ten-minute call."""

from __future__ import annotations

import random

import pytest

from gateway.media.clock import PacketClock, SlotClock

TEN_MINUTES = 600.0


def run(clock: PacketClock, until: float, wake_late) -> int:
    """Drive `clock` like the pacer does; returns the packets sent by `until`."""
    now, sent = clock.start, 0
    while True:
        now = max(now, clock.deadline) + wake_late()
        if now > until:
            return sent
        clock.tick(now)
        sent += 1


@pytest.mark.parametrize("ptime", [0.02, 0.03])
def test_ten_minutes_are_exactly_the_right_number_of_packets(ptime: float) -> None:
    rng = random.Random(1)

    def wake_late() -> float:
        # Typical loop jitter, some 5-15 ms hiccups, and an occasional 100 ms stall.
        r = rng.random()
        return (
            rng.uniform(0, 0.002) if r < 0.95 else rng.uniform(0.005, 0.015) if r < 0.999 else 0.1
        )

    clock = PacketClock(1000.0, ptime)
    sent = run(clock, 1000.0 + TEN_MINUTES, wake_late)
    expected = round(TEN_MINUTES / ptime)
    print(
        f"\nptime {ptime * 1000:.0f} ms: {sent} packets in 10 min"
        f" (expected {expected}), {clock.late} sent late"
    )
    assert abs(sent - expected) <= 1
    assert clock.skipped == 0
    assert clock.late > 0  # the stalls happened, and were caught up without drift


def test_a_steady_few_ms_of_lateness_does_not_accumulate() -> None:
    """A relative schedule (sleep(period) after each send) would lose 3 ms every packet."""
    clock = PacketClock(0.0, 0.02)
    sent = run(clock, TEN_MINUTES, lambda: 0.003)
    assert abs(sent - 30_000) <= 1


def test_a_long_stall_skips_ahead_instead_of_bursting() -> None:
    clock = PacketClock(0.0, 0.02, max_catch_up_s=0.2)
    for _ in range(10):
        assert clock.tick(clock.deadline) == 0
    # The loop was blocked for one second: 50 packets are overdue.
    assert clock.tick(clock.deadline + 1.0) == 50
    assert clock.skipped == 50
    # The schedule continues from the wall clock, on the same grid.
    assert clock.deadline == pytest.approx(0.02 * 61)
    assert clock.ticks == 61


def test_a_short_stall_is_caught_up_by_sending_the_overdue_packets() -> None:
    clock = PacketClock(0.0, 0.02, max_catch_up_s=0.2)
    clock.tick(0.0)
    now = 0.1  # 100 ms late: packets 1..5 are due
    burst = 0
    while clock.deadline <= now:
        assert clock.tick(now) == 0
        burst += 1
    assert burst == 5 and clock.skipped == 0


def test_period_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PacketClock(0.0, 0.0)


# --- slots: the pacer's interleaved schedules ----------------------------------------------


def test_each_slot_keeps_its_own_grid_for_ten_minutes() -> None:
    rng = random.Random(2)
    clock = SlotClock(0.0, 0.02, 10)
    sent = [0] * 10
    due_at: list[list[float]] = [[] for _ in range(10)]
    now = 0.0
    while True:
        deadline = clock.deadline
        if deadline > now:  # the pacer sleeps, and wakes late; overdue ticks run at once
            now = deadline + (rng.uniform(0, 0.002) if rng.random() < 0.99 else 0.05)
        if now > TEN_MINUTES:
            break
        slot, skipped, _ = clock.tick(now)
        assert skipped == 0
        sent[slot] += 1
        if len(due_at[slot]) < 3:
            due_at[slot].append(deadline)
    assert all(abs(n - 30_000) <= 1 for n in sent), sent
    # Slot k is k * 2 ms into each period, every period.
    for k, dues in enumerate(due_at):
        assert dues == pytest.approx([k * 0.002 + n * 0.02 for n in range(3)])


def test_a_long_stall_tells_every_slot_how_many_of_its_packets_were_skipped() -> None:
    clock = SlotClock(0.0, 0.02, 10, max_catch_up_s=0.2)
    ticks = [0] * 10
    skipped = [0] * 10
    for _ in range(23):  # two periods and three slots
        slot, _, _ = clock.tick(clock.deadline)
        ticks[slot] += 1
    late = []
    now = clock.deadline + 1.005  # one second and a bit: all ten slots overdue
    slot, missed, is_late = clock.tick(now)
    ticks[slot] += 1
    skipped[slot] += missed
    assert is_late and missed > 0
    for _ in range(9 + 10):  # the other slots' ticks, then one more round
        slot, missed, is_late = clock.tick(clock.deadline)
        ticks[slot] += 1
        skipped[slot] += missed
        late.append(is_late)
    # Every slot's packets sent or skipped add up to its own deadlines so far, and each slot
    # was told about its skipped ones at its first tick after the stall.
    end = clock.deadline  # nothing due from here on has been sent or skipped
    elapsed = [sum(1 for n in range(200) if k * 0.002 + n * 0.02 < end - 1e-9) for k in range(10)]
    assert [t + s for t, s in zip(ticks, skipped, strict=True)] == elapsed
    assert all(50 <= s <= 51 for s in skipped), skipped
    assert not any(late)  # after the skip, back on the grid


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SlotClock(0.0, 0.02, 0)
