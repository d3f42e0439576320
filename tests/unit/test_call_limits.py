"""The call's time limits as a plain object: any clock, no sleeps."""

from __future__ import annotations

from gateway.bridge.call_limits import HOLD_TIMEOUT, MAX_CALL_DURATION, CallLimits


def limits(max_call_s: float = 14400, hold_timeout_s: float = 3600) -> CallLimits:
    lim = CallLimits(max_call_s, hold_timeout_s)
    lim.answered(1000.0)
    return lim


def test_the_call_ends_at_its_longest_duration_from_the_answer() -> None:
    lim = limits(max_call_s=2)
    assert lim.deadline() == (1002.0, MAX_CALL_DURATION)
    assert lim.expired(1001.999) is None
    assert lim.expired(1002.0) == MAX_CALL_DURATION


def test_a_hold_ends_the_call_after_the_hold_timeout() -> None:
    lim = limits(hold_timeout_s=60)
    lim.hold(1100.0)
    assert lim.deadline() == (1160.0, HOLD_TIMEOUT)
    assert lim.expired(1159.9) is None
    assert lim.held_for(1159.9) == 1159.9 - 1100.0
    assert lim.expired(1160.0) == HOLD_TIMEOUT


def test_a_hold_refreshed_by_a_reinvite_keeps_its_start() -> None:
    lim = limits(hold_timeout_s=60)
    lim.hold(1100.0)
    lim.hold(1150.0)  # sendonly again: the same hold
    assert lim.expired(1160.0) == HOLD_TIMEOUT


def test_a_resume_starts_the_count_again_at_the_next_hold() -> None:
    lim = limits(hold_timeout_s=60)
    lim.hold(1100.0)
    lim.resume()
    assert lim.held_for(1159.0) == 0.0
    assert lim.deadline() == (15400.0, MAX_CALL_DURATION)
    assert lim.expired(1200.0) is None  # the first hold's deadline is gone
    lim.hold(1200.0)
    assert lim.expired(1259.0) is None
    assert lim.expired(1260.0) == HOLD_TIMEOUT


def test_the_earlier_limit_wins() -> None:
    lim = limits(max_call_s=100, hold_timeout_s=60)
    lim.hold(1080.0)  # the hold would end at 1140, the call ends at 1100
    assert lim.deadline() == (1100.0, MAX_CALL_DURATION)
    assert lim.expired(1100.0) == MAX_CALL_DURATION
