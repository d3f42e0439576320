"""RtpSourceGuard: whose RTP a call hears (strict RTP), without sockets or clocks."""

from __future__ import annotations

import random

import pytest

from gateway.media.source import MAX_CANDIDATES, RtpSourceGuard, Verdict

ACCEPT, LEARNED, DROP = Verdict.ACCEPT, Verdict.LEARNED, Verdict.DROP
SDP = ("192.0.2.10", 4000)
NAT = ("198.51.100.7", 61000)
SPRAYER = ("203.0.113.66", 5004)
PT, DTMF = 0, 101


def guard(sdp=SDP, **kwargs) -> RtpSourceGuard:
    return RtpSourceGuard(sdp, [PT, DTMF], **kwargs)


def run(g: RtpSourceGuard, addr, seqs, now: float, *, ssrc: int = 0x1234, pt: int = PT) -> list:
    """Packets in a row from ``addr``, 20 ms apart from ``now``."""
    return [g.check(addr, (pt, s & 0xFFFF, ssrc), now + i * 0.02) for i, s in enumerate(seqs)]


def test_the_sdp_address_is_heard_at_once_even_before_a_valid_packet() -> None:
    g = guard()
    assert g.source == SDP
    assert g.check(SDP, None, 0.0) is ACCEPT  # its junk is the parser's business, not ours
    assert g.check(SDP, (PT, 7, 1), 0.02) is ACCEPT
    assert g.heard_at == 0.02


def test_junk_never_latches() -> None:
    g = guard(sdp=None)  # late offer: nobody is known yet
    for i in range(1000):
        assert g.check(SPRAYER, None, i * 0.001) is DROP
    assert g.source is None and g.learned == 0


def test_late_offer_learns_the_first_run_of_valid_packets() -> None:
    g = guard(sdp=None)
    assert run(g, NAT, range(100, 104), 0.0) == [DROP, DROP, DROP, LEARNED]
    assert g.source == NAT and g.learned == 1
    assert g.check(NAT, (PT, 104, 0x1234), 0.1) is ACCEPT
    assert g.check(SPRAYER, (PT, 1, 1), 0.1) is DROP


@pytest.mark.parametrize(
    "breaker",
    [
        None,  # junk from the candidate itself
        (PT, 500, 0x1234),  # a jump in the sequence
        (PT, 102, 0x9999),  # another SSRC
        (8, 102, 0x1234),  # a payload type we did not negotiate
    ],
)
def test_a_break_in_the_run_starts_the_count_again(breaker) -> None:
    g = guard(sdp=None)
    assert run(g, NAT, [100, 101], 0.0) == [DROP, DROP]
    assert g.check(NAT, breaker, 0.05) is DROP
    # Had the break been ignored, 103 would be the fourth in a row.
    assert run(g, NAT, range(102, 106), 0.1) == [DROP, DROP, DROP, LEARNED]
    assert g.source == NAT


def test_telephone_events_and_sequence_wrap_count_towards_learning() -> None:
    g = guard(sdp=None)
    assert g.check(NAT, (DTMF, 65534, 7), 0.0) is DROP
    assert g.check(NAT, (PT, 65535, 7), 0.02) is DROP
    assert g.check(NAT, (DTMF, 0, 7), 0.04) is DROP
    assert g.check(NAT, (PT, 1, 7), 0.06) is LEARNED


def test_a_nat_source_is_learned_when_the_sdp_address_never_sent() -> None:
    g = guard()
    assert run(g, NAT, range(10, 14), 5.0) == [DROP, DROP, DROP, LEARNED]
    assert g.source == NAT


def test_never_while_the_sdp_address_is_sending() -> None:
    g = guard()
    for i in range(200):  # 4 s of both sending: the SDP's address keeps the call
        t = i * 0.02
        assert g.check(SDP, (PT, i, 1), t) is ACCEPT
        assert g.check(NAT, (PT, 1000 + i, 2), t + 0.001) is DROP
    assert g.source == SDP and g.learned == 0
    last = 199 * 0.02
    # The SDP's address falls silent: the run already counted is learned after 1 s of quiet.
    assert g.check(NAT, (PT, 1200, 2), last + 0.99) is DROP
    assert g.check(NAT, (PT, 1201, 2), last + 1.0) is LEARNED


def test_the_sdp_address_takes_back_over_at_once() -> None:
    g = guard()
    run(g, NAT, range(4), 0.0)
    assert g.source == NAT
    assert g.check(SDP, (PT, 50, 1), 0.2) is ACCEPT
    assert g.source == SDP  # and our audio goes there again
    assert g.check(NAT, (PT, 4, 0x1234), 0.22) is DROP


def test_a_learned_source_is_not_taken_by_another_while_it_sends() -> None:
    g = guard(sdp=None)
    run(g, NAT, range(4), 0.0)
    for i in range(100):
        t = 0.1 + i * 0.02
        assert g.check(NAT, (PT, 4 + i, 0x1234), t) is ACCEPT
        assert g.check(SPRAYER, (PT, 9000 + i, 5), t + 0.001) is DROP  # a perfect run, too
    assert g.source == NAT


def test_random_rtp_from_many_ports_never_learns_nor_stops_the_caller_learning() -> None:
    rng = random.Random(13)
    g = guard(sdp=None)
    caller_seq = 300
    verdicts = []
    for i in range(5000):
        t = i * 0.001
        port = rng.randrange(1024, 65536)
        header = (PT, rng.randrange(65536), rng.randrange(1 << 32))
        assert g.check((SPRAYER[0], port), header, t) is DROP
        assert g.check(SPRAYER, None, t) is DROP
        if i % 20 == 0 and g.source is None:  # the caller, among 2 x 20 sprayed packets
            verdicts.append(g.check(NAT, (PT, caller_seq, 42), t))
            caller_seq += 1
    assert verdicts == [DROP, DROP, DROP, LEARNED]
    assert g.source == NAT
    assert len(g._candidates) <= MAX_CANDIDATES


def test_a_new_sdp_address_is_heard_at_once_and_the_old_must_learn_again() -> None:
    g = guard()
    run(g, NAT, range(4), 0.0)
    moved = ("192.0.2.20", 6000)
    g.moved(moved)
    assert g.source == moved
    assert g.check(SPRAYER, None, 0.2) is DROP  # junk still never latches
    assert run(g, NAT, range(4, 8), 0.2) == [DROP, DROP, DROP, LEARNED]
    assert g.check(moved, (PT, 1, 9), 0.4) is ACCEPT and g.source == moved


def test_ipv6_sdp_address_matches_the_way_the_kernel_spells_it() -> None:
    g = guard(sdp=("2001:DB8:0::0001", 5000))
    assert g.source == ("2001:db8::1", 5000)
    assert g.check(("2001:db8::1", 5000), None, 0.0) is ACCEPT


def test_strict_off_latches_on_the_first_valid_packet_from_anywhere() -> None:
    g = guard(strict=False)
    assert g.check(SPRAYER, None, 0.0) is DROP  # junk never latches
    assert g.check(NAT, (PT, 1, 1), 0.01) is LEARNED
    assert g.source == NAT
    assert g.check(SDP, (PT, 1, 1), 0.02) is DROP
    g.moved(SDP)
    assert g.check(SDP, (PT, 2, 1), 0.03) is ACCEPT
    assert g.check(NAT, (PT, 2, 1), 0.04) is DROP  # the SDP's address was heard first


def test_learn_packets_must_be_positive() -> None:
    with pytest.raises(ValueError):
        guard(learn_packets=0)
