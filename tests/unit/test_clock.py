"""The pacer's schedule on a simulated clock: no drift over a ten-minute call."""

from __future__ import annotations

import random

import pytest

from gateway.media.clock import PacketClock

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
