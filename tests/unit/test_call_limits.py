"""The call's time limits as a plain object: any clock, no sleeps."""

from __future__ import annotations

from gateway.bridge.call_limits import HOLD_TIMEOUT, MAX_CALL_DURATION, RTP_TIMEOUT, CallLimits


def limits(max_call_s: float = 14400, hold_timeout_s: float = 3600) -> CallLimits:
    lim = CallLimits(max_call_s, hold_timeout_s)
    lim.answered(1000.0)
    return lim


def test_the_call_ends_at_its_longest_duration_from_the_answer() -> None:
    lim = limits(max_call_s=2)
    assert lim.deadline(1000.0) == (1002.0, MAX_CALL_DURATION)
    assert lim.expired(1001.999) is None
    assert lim.expired(1002.0) == MAX_CALL_DURATION


def test_a_hold_ends_the_call_after_the_hold_timeout() -> None:
    lim = limits(hold_timeout_s=60)
    lim.hold(1100.0)
    assert lim.deadline(1100.0) == (1160.0, HOLD_TIMEOUT)
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
    assert lim.deadline(1159.0) == (15400.0, MAX_CALL_DURATION)
    assert lim.expired(1200.0) is None  # the first hold's deadline is gone
    lim.hold(1200.0)
    assert lim.expired(1259.0) is None
    assert lim.expired(1260.0) == HOLD_TIMEOUT


def test_the_earlier_limit_wins() -> None:
    lim = limits(max_call_s=100, hold_timeout_s=60)
    lim.hold(1080.0)  # the hold would end at 1140, the call ends at 1100
    assert lim.deadline(1080.0) == (1100.0, MAX_CALL_DURATION)
    assert lim.expired(1100.0) == MAX_CALL_DURATION


class Receiver:
    """The RTP receiver's silence count, as media/receiver.py keeps it."""

    def __init__(self) -> None:
        self.last_rx = 0.0
        self.held = False

    def timeout_from(self, now: float) -> None:
        self.last_rx = max(self.last_rx, now)

    def silent_for(self, now: float) -> float | None:
        return None if self.held else now - self.last_rx


def test_the_rtp_timeout_counts_from_the_answer_and_moves_with_each_packet() -> None:
    rx = Receiver()
    lim = CallLimits(14400, 3600, rtp_timeout_s=5, caller=rx)
    lim.answered(1000.0)
    assert lim.deadline(1001.0) == (1005.0, RTP_TIMEOUT)
    rx.last_rx = 1004.0  # a packet
    assert lim.expired(1005.0) is None and lim.deadline(1005.0) == (1009.0, RTP_TIMEOUT)
    assert lim.expired(1009.0) == RTP_TIMEOUT and lim.silent_for(1009.0) == 5.0


def test_no_rtp_timeout_while_held_or_when_turned_off() -> None:
    rx = Receiver()
    lim = CallLimits(100, 60, rtp_timeout_s=5, caller=rx)
    lim.answered(1000.0)
    rx.held = True
    lim.hold(1001.0)
    assert lim.deadline(1050.0) == (1061.0, HOLD_TIMEOUT)
    off = CallLimits(100, 60, rtp_timeout_s=0, caller=Receiver())
    off.answered(1000.0)
    assert off.deadline(1050.0) == (1100.0, MAX_CALL_DURATION)
