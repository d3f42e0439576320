"""Reorder buffer and audio clock on hand-built packet sequences (no sockets, no sleeps)."""

from __future__ import annotations

import random

import pytest

from gateway.media.jitter import MAX_HELD, AudioClock, ReorderBuffer
from gateway.media.rtp import RtpPacket

SSRC = 0x1234


def pkt(seq: int, *, ssrc: int = SSRC, ts: int | None = None, pt: int = 0) -> RtpPacket:
    seq &= 0xFFFF
    return RtpPacket(pt, seq, (seq * 160 if ts is None else ts) & 0xFFFFFFFF, ssrc, False, b"")


def seqs(packets: list[RtpPacket]) -> list[int]:
    return [p.sequence for p in packets]


def feed(buf: ReorderBuffer, order: list[int], now: float = 0.0, **kw: int) -> list[int]:
    out: list[int] = []
    for seq in order:
        out += seqs(buf.push(pkt(seq, **kw), now))
    return out


def test_in_order_packets_go_straight_through() -> None:
    buf = ReorderBuffer()
    for seq in range(100, 200):
        assert seqs(buf.push(pkt(seq), seq * 0.02)) == [seq]
        assert buf.deadline is None  # nothing ever waits: no added latency
    assert buf.stats.delivered == 100 and buf.stats.lost == 0


def test_a_swapped_pair_is_put_back_in_order() -> None:
    buf = ReorderBuffer()
    assert feed(buf, [1, 2]) == [1, 2]
    assert seqs(buf.push(pkt(4), 0.06)) == []  # 3 is late: 4 waits
    assert buf.deadline == pytest.approx(0.12)
    assert seqs(buf.push(pkt(3), 0.07)) == [3, 4]
    assert buf.deadline is None
    assert buf.stats.reordered == 1 and buf.stats.lost == 0


def test_a_lost_packet_is_given_up_after_60_ms_by_the_timer() -> None:
    buf = ReorderBuffer(max_delay_s=0.06)
    feed(buf, [10])
    assert seqs(buf.push(pkt(12), 1.00)) == []
    assert seqs(buf.poll(1.059)) == []  # not yet
    assert seqs(buf.poll(1.060)) == [12]
    assert buf.stats.lost == 1
    assert seqs(buf.push(pkt(11), 1.07)) == []  # too late now: dropped
    assert buf.stats.late == 1


def test_a_gap_is_given_up_when_later_packets_have_waited_60_ms() -> None:
    buf = ReorderBuffer(max_delay_s=0.06)
    feed(buf, [0])
    out = []
    for i, seq in enumerate([2, 3, 4, 5]):  # 1 never comes; arrivals 20 ms apart
        out += seqs(buf.push(pkt(seq), 0.02 * (i + 1)))
    # Packet 5 arrives at 80 ms, when packet 2 (in at 20 ms) has waited 60 ms: 1 is lost.
    assert out == [2, 3, 4, 5]
    assert buf.stats.lost == 1 and buf.deadline is None


def test_burst_loss_counts_every_missing_packet() -> None:
    buf = ReorderBuffer()
    feed(buf, [0])
    buf.push(pkt(26), 0.5)
    assert seqs(buf.poll(0.56)) == [26]
    assert buf.stats.lost == 25


def test_duplicates_are_dropped_whether_delivered_or_waiting() -> None:
    buf = ReorderBuffer()
    assert feed(buf, [1, 1, 2, 4, 4, 3, 3, 2]) == [1, 2, 3, 4]
    assert buf.stats.duplicates == 1  # the second 4 while 4 waited
    assert buf.stats.late == 3  # 1, 3 and 2 again, after their turn


def test_sequence_wraps_around_65535() -> None:
    buf = ReorderBuffer()
    assert feed(buf, [65533, 65534, 0, 65535, 1, 2]) == [65533, 65534, 65535, 0, 1, 2]
    assert buf.stats.lost == 0 and buf.stats.reordered == 1


def test_a_new_ssrc_starts_a_new_sequence_after_releasing_the_old_one() -> None:
    buf = ReorderBuffer()
    assert feed(buf, [10, 12]) == [10]  # 12 waits for 11
    out = buf.push(pkt(5000, ssrc=0xBEEF), 0.01)
    assert [(p.ssrc, p.sequence) for p in out] == [(SSRC, 12), (0xBEEF, 5000)]
    assert feed(buf, [5001, 5002], ssrc=0xBEEF) == [5001, 5002]
    assert buf.stats.ssrc_changes == 1 and buf.stats.lost == 1


def test_a_sequence_restart_is_believed_after_two_packets() -> None:
    """RFC 3550 A.1: one stray packet far away is dropped; two in a row are a restart."""
    buf = ReorderBuffer()
    assert feed(buf, [100, 101, 40000]) == [100, 101]
    assert feed(buf, [102]) == [102]  # the stray one did not disturb the stream
    assert feed(buf, [20000, 20001, 20002]) == [20001, 20002]
    assert buf.stats.restarts == 1


def test_a_huge_backlog_of_waiting_packets_is_bounded() -> None:
    buf = ReorderBuffer(max_delay_s=10.0)
    feed(buf, [0])
    out = feed(buf, list(range(2, MAX_HELD + 3)))
    assert out and out[0] == 2  # the gap was given up without waiting for the timer
    assert buf.stats.lost == 1


def test_random_reordering_within_the_window_loses_nothing() -> None:
    rng = random.Random(4)
    order = list(range(60000, 60000 + 3000))
    # Displace packets by up to 2 places (40 ms at 20 ms ptime), and duplicate some.
    for i in range(0, len(order) - 2, 3):
        j = i + rng.randint(0, 2)
        order[i], order[j] = order[j], order[i]
    order = [s for s in order for _ in range(2 if s % 17 == 0 else 1)]
    buf = ReorderBuffer()
    out = []
    for k, seq in enumerate(order):
        out += seqs(buf.push(pkt(seq), k * 0.02))
    assert out == [s & 0xFFFF for s in range(60000, 63000)]
    assert buf.stats.lost == 0
    assert buf.stats.reordered > 300
    assert buf.stats.late + buf.stats.duplicates == len(range(60010, 63000, 17))  # copies


# --- audio clock -----------------------------------------------------------------------------


def test_contiguous_audio_needs_no_fill() -> None:
    clock = AudioClock()
    assert [clock.gap(ts, 160) for ts in range(0, 1600, 160)] == [0] * 10


def test_lost_packets_become_silence_of_their_exact_length() -> None:
    clock = AudioClock()
    clock.gap(1000, 160)
    assert clock.gap(1000 + 4 * 160, 160) == 3 * 160  # three 20 ms packets missing
    assert clock.filled_samples == 480


def test_fill_across_the_timestamp_wrap_and_after_dtmf() -> None:
    clock = AudioClock()
    clock.gap(0xFFFFFFFF - 159, 160)  # ends exactly at 2**32
    assert clock.gap(800, 160) == 800  # 100 ms of key press sent as events, not audio


def test_long_jumps_and_backward_steps_are_not_filled() -> None:
    clock = AudioClock(max_fill_s=2.0)
    clock.gap(0, 160)
    assert clock.gap(160 + 3 * 8000, 160) == 0  # 3 s: an outage or a clock reset
    assert clock.discontinuities == 1
    assert clock.gap(160 + 3 * 8000, 160) == 0  # a repeat overlaps: nothing to fill
    clock.reset()
    assert clock.gap(123456, 160) == 0
