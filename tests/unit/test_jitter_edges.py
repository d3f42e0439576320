"""The reorder buffer and audio clock at the exact edges of their windows.

RFC 3550 A.1's MAX_DROPOUT and MAX_MISORDER, the 64-packet backlog, the 60 ms deadline and
the 2 s fill limit are each checked one step inside and one step outside, so an off-by-one
in any comparison changes an assertion here.
"""

from __future__ import annotations

from gateway.media.jitter import (
    MAX_DROPOUT,
    MAX_HELD,
    MAX_MISORDER,
    AudioClock,
    ReorderBuffer,
    ReorderStats,
    _seq_delta,
)
from gateway.media.rtp import RtpPacket

SSRC = 0x1234


def pkt(seq: int, *, ssrc: int = SSRC) -> RtpPacket:
    seq &= 0xFFFF
    return RtpPacket(0, seq, seq * 160, ssrc, False, b"")


def seqs(packets: list[RtpPacket]) -> list[int]:
    return [p.sequence for p in packets]


def started(first: int = 1000, **kw) -> ReorderBuffer:
    buf = ReorderBuffer(**kw)
    assert seqs(buf.push(pkt(first), 0.0)) == [first]
    return buf


def test_the_window_constants_are_rfc_3550s() -> None:
    assert (MAX_DROPOUT, MAX_MISORDER, MAX_HELD) == (3000, 100, 64)
    assert ReorderBuffer().max_delay_s == 0.06
    assert ReorderStats() == ReorderStats(0, 0, 0, 0, 0, 0, 0, 0)


def test_seq_delta_is_signed_modulo_2_16() -> None:
    assert _seq_delta(5, 5) == 0
    assert _seq_delta(0, 65535) == 1
    assert _seq_delta(65535, 0) == -1
    assert _seq_delta(32767, 0) == 32767
    assert _seq_delta(32768, 0) == -32768


def test_a_jump_of_max_dropout_waits_and_one_more_is_a_stray() -> None:
    buf = started(1000)
    assert seqs(buf.push(pkt(1001 + MAX_DROPOUT), 0.0)) == []  # delta 3000: held
    assert buf.waiting and buf.stats.late == 0
    buf = started(1000)
    assert seqs(buf.push(pkt(1002 + MAX_DROPOUT), 0.0)) == []  # delta 3001: a stray
    assert not buf.waiting and buf.stats.late == 1


def test_a_step_back_of_max_misorder_is_late_and_one_more_is_a_stray() -> None:
    buf = started(1000)
    buf.push(pkt(1001 - MAX_MISORDER), 0.0)  # delta -100
    assert buf.stats.late == 1 and buf._probation is None
    buf.push(pkt(1000 - MAX_MISORDER), 0.0)  # delta -101: may be a restart
    assert buf.stats.late == 2 and buf._probation == (1001 - MAX_MISORDER) & 0xFFFF
    assert seqs(buf.push(pkt(1001 - MAX_MISORDER), 0.0)) == []  # in the window: late, no restart
    assert buf.stats.restarts == 0 and buf.stats.late == 3
    buf.push(pkt(999 - MAX_MISORDER), 0.0)  # delta -102: a stray, 899 then 900 confirms
    assert seqs(buf.push(pkt(1000 - MAX_MISORDER), 0.0)) == [1000 - MAX_MISORDER]
    assert buf.stats.restarts == 1


def test_a_restart_releases_what_waited_and_continues_from_the_new_sequence() -> None:
    buf = started(1000)
    buf.push(pkt(1002), 0.0)  # waits for 1001
    buf.push(pkt(30000), 0.0)  # stray
    out = seqs(buf.push(pkt(30001), 0.0))  # confirmed: 1002 first, then the new sequence
    assert out == [1002, 30001]
    assert buf.stats.lost == 1 and buf.stats.restarts == 1 and buf.stats.late == 1
    assert seqs(buf.push(pkt(30002), 0.0)) == [30002]
    assert buf.stats.delivered == 4


def test_the_backlog_holds_max_held_and_gives_up_at_one_more() -> None:
    buf = started(0, max_delay_s=10.0)
    for seq in range(2, MAX_HELD + 2):  # 64 packets held behind the missing 1
        assert seqs(buf.push(pkt(seq), 0.0)) == []
    assert len(buf._held) == MAX_HELD and buf.stats.lost == 0
    out = seqs(buf.push(pkt(MAX_HELD + 2), 0.0))  # the 65th: the gap is given up
    assert out == list(range(2, MAX_HELD + 3))
    assert buf.stats.lost == 1 and not buf.waiting


def test_the_deadline_is_the_oldest_arrival_plus_max_delay() -> None:
    buf = started(0, max_delay_s=0.05)
    assert buf.deadline is None and not buf.waiting
    buf.push(pkt(3), 1.0)
    buf.push(pkt(2), 1.02)
    assert buf.waiting and buf.deadline == 1.05
    assert seqs(buf.poll(1.0499)) == []
    assert seqs(buf.poll(1.05)) == [2, 3]
    assert buf.stats.lost == 1 and buf.deadline is None


def test_a_gap_closed_in_time_counts_as_reordered_once() -> None:
    buf = started(0)
    buf.push(pkt(2), 0.0)
    buf.push(pkt(3), 0.0)
    assert seqs(buf.push(pkt(1), 0.01)) == [1, 2, 3]
    assert buf.stats.reordered == 1 and buf.stats.delivered == 4
    assert buf.stats.received == 4 and buf.stats.lost == 0


def test_take_in_order_is_only_the_next_packet_of_the_current_source() -> None:
    buf = ReorderBuffer()
    assert not buf.take_in_order(0, SSRC)  # no source yet
    buf.push(pkt(7), 0.0)
    assert not buf.take_in_order(9, SSRC)
    assert not buf.take_in_order(8, SSRC + 1)
    assert buf.stats.received == 1
    assert buf.take_in_order(8, SSRC)
    assert buf.stats.received == 2 and buf.stats.delivered == 2
    buf.push(pkt(10), 0.0)  # 9 missing: 10 waits
    assert not buf.take_in_order(9, SSRC)  # something waits: the full path must run
    assert seqs(buf.push(pkt(9), 0.0)) == [9, 10]


def test_take_in_order_wraps_the_next_sequence() -> None:
    buf = started(65534)
    assert buf.take_in_order(65535, SSRC)
    assert buf.take_in_order(0, SSRC)


def test_the_first_source_is_not_an_ssrc_change() -> None:
    buf = started(5)
    assert buf.stats.ssrc_changes == 0
    assert seqs(buf.push(pkt(900, ssrc=7), 0.0)) == [900]
    assert buf.stats.ssrc_changes == 1 and buf.stats.received == 2
    assert seqs(buf.push(pkt(40, ssrc=8), 0.0)) == [40]
    assert buf.stats.ssrc_changes == 2  # each change counted


def test_audio_clock_fills_up_to_max_fill_and_not_one_sample_more() -> None:
    clock = AudioClock(max_fill_s=0.5, clock_rate=8000)
    assert clock.max_fill == 4000
    clock.gap(0, 160)
    assert clock.gap(160 + 4000, 160) == 4000
    assert clock.filled_samples == 4000 and clock.discontinuities == 0
    assert clock.gap(4320 + 4001, 160) == 0
    assert clock.discontinuities == 1 and clock.filled_samples == 4000


def test_audio_clock_defaults_and_small_gaps() -> None:
    clock = AudioClock()
    assert clock.max_fill == 16000 and clock.filled_samples == 0
    assert clock.gap(0, 160) == 0
    assert clock.gap(161, 160) == 1  # one sample late: one sample of silence
    assert clock.gap(320, 160) == 0  # one early (overlap): nothing
    assert clock.filled_samples == 1
    assert AudioClock(clock_rate=16000).max_fill == 32000


def test_audio_clock_expected_wraps_at_2_32() -> None:
    clock = AudioClock()
    clock.gap(0xFFFFFFFF, 1)  # the next audio is due at 0
    assert clock.gap(0, 160) == 0
    assert clock.gap(160 + 0x7FFF, 160) == 0  # far beyond max_fill: a discontinuity
    assert clock.discontinuities == 1


def test_a_closed_gap_delivers_up_to_the_next_gap_only() -> None:
    buf = started(1)
    assert seqs(buf.push(pkt(3), 0.0)) == [] and seqs(buf.push(pkt(5), 0.0)) == []
    assert seqs(buf.push(pkt(2), 0.01)) == [2, 3]  # 4 still missing: 5 waits
    assert seqs(buf.push(pkt(4), 0.02)) == [4, 5]


def test_giving_up_across_the_wrap_goes_in_sequence_order() -> None:
    """65534 and 0 lost; 65535 and 1 waited: given up in the order 65535, 1 (not 1 first,
    which is the smaller number)."""
    buf = started(65533)
    assert seqs(buf.push(pkt(1), 0.0)) == [] and seqs(buf.push(pkt(65535), 0.0)) == []
    assert seqs(buf.poll(1.0)) == [65535, 1]
    assert buf.stats.lost == 2


def test_each_confirmed_restart_is_counted() -> None:
    buf = started(100)
    for jump in (20_000, 40_000):
        assert seqs(buf.push(pkt(jump), 0.0)) == []  # a stray, on probation
        assert seqs(buf.push(pkt(jump + 1), 0.0)) == [jump + 1]  # confirmed: a restart
    assert buf.stats.restarts == 2


def test_audio_clock_counts_every_fill_and_every_discontinuity() -> None:
    clock = AudioClock(max_fill_s=0.5, clock_rate=8000)
    ts = 0
    assert clock.gap(ts, 160) == 0
    for lost in (80, 40):  # two gaps filled
        ts += 160 + lost
        assert clock.gap(ts, 160) == lost
    for _ in range(2):  # two jumps too long to fill
        ts += 160 + 10_000
        assert clock.gap(ts, 160) == 0
    assert (clock.filled_samples, clock.discontinuities) == (120, 2)
