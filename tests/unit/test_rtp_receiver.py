"""RtpReceiver: the receive rules of one call, as tables of datagrams in and outputs out.

No sockets, no event loop, no sleeps: each step is (datagram, source address, now) and the
expected answer is the list of outputs the stream's shell would act on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import pytest

from gateway.media.dtmf import DtmfEvent
from gateway.media.receiver import Drop, Output, RtpReceiver, Signal, SourceChanged
from gateway.media.rtp import RtpSender
from gateway.media.srtp import CryptoAttribute, SrtpSession

SDP = ("192.0.2.10", 4000)  # the address the caller's SDP names
NAT = ("198.51.100.7", 61000)  # the caller behind a NAT that rewrote its port
STRANGER = ("203.0.113.66", 5004)
PT, DTMF_PT, CN_PT = 0, 101, 13
SSRC = 0xCAFE
N = 8  # samples (bytes of G.711) per packet in these tables; timestamps step by it
SILENCE = 0xFF  # mu-law silence: what a gap is filled with

FOREIGN, MALFORMED = Drop.FOREIGN_SOURCE, Drop.MALFORMED
WAIT = Signal.REORDER_WAIT


def au(n: int) -> bytes:
    """Packet ``n``'s audio: recognisable bytes."""
    return bytes([n & 0x7F]) * N


def fill(samples: int) -> bytes:
    return bytes([SILENCE]) * samples


def pkt(
    seq: int,
    payload: bytes | None = None,
    *,
    pt: int = PT,
    ts: int | None = None,
    ssrc: int = SSRC,
    marker: bool = False,
    csrcs: Sequence[int] = (),
    extension: bytes | None = None,
    padding: int = 0,
    version: int = 2,
) -> bytes:
    """An RTP packet, any header flag set as asked (RFC 3550 §5.1)."""
    payload = au(seq) if payload is None else payload
    ts = seq * N if ts is None else ts
    first = version << 6 | (0x20 if padding else 0) | (0x10 if extension is not None else 0)
    first |= len(csrcs)
    head = struct.pack("!BBHII", first, pt | (0x80 if marker else 0), seq & 0xFFFF, ts, ssrc)
    head += b"".join(struct.pack("!I", c) for c in csrcs)
    if extension is not None:
        head += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    tail = bytes(padding - 1) + bytes([padding]) if padding else b""
    return head + payload + tail


def key(seq: int, event: int, duration: int, *, end: bool = False, ts: int = 16) -> bytes:
    """An RFC 4733 telephone-event packet (volume 10)."""
    body = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
    return pkt(seq, body, pt=DTMF_PT, ts=ts)


def receiver(remote=SDP, **kwargs) -> RtpReceiver:
    kwargs.setdefault("dtmf_payload_type", DTMF_PT)
    return RtpReceiver(PT, remote, silence=SILENCE, **kwargs)


Step = tuple[bytes, tuple[str, int], float]


def feed(rx: RtpReceiver, steps: Iterable[Step]) -> list[list[Output]]:
    """Each step's answer, copied (the short path's list is reused by the next call)."""
    return [list(rx.receive(data, addr, now)) for data, addr, now in steps]


def from_(addr, packets: Iterable[bytes], start: float = 0.0) -> list[Step]:
    """Packets from ``addr``, 20 ms apart from ``start``."""
    return [(p, addr, start + i * 0.02) for i, p in enumerate(packets)]


# --- whose packets (strict RTP: source.py under the receiver) ----------------------------------

SOURCE_CASES = {
    "the SDP address is heard at once": (
        SDP,
        True,
        from_(SDP, [pkt(1), pkt(2)]),
        [[au(1)], [au(2)]],
    ),
    "a stranger's RTP and junk are dropped, the caller still heard": (
        SDP,
        True,
        [(pkt(1, au(99)), STRANGER, 0.0), (b"\x00", STRANGER, 0.0), (pkt(1), SDP, 0.01)],
        [[FOREIGN], [FOREIGN], [au(1)]],
    ),
    "late offer: a run of four valid packets is learned, the first three were on trial": (
        None,
        True,
        from_(NAT, [pkt(s) for s in range(1, 6)]),
        [[FOREIGN], [FOREIGN], [FOREIGN], [SourceChanged(NAT, True), au(4)], [au(5)]],
    ),
    "late offer: junk and random RTP never latch": (
        None,
        True,
        [
            (b"\x80", STRANGER, 0.0),
            (pkt(7, ssrc=1), STRANGER, 0.01),
            (pkt(900, ssrc=2), STRANGER, 0.02),
            (pkt(3, ssrc=3, pt=8), STRANGER, 0.03),
        ],
        [[FOREIGN]] * 4,
    ),
    "a NAT source is learned while the SDP address is quiet": (
        SDP,
        True,
        from_(NAT, [pkt(s) for s in range(1, 5)]),
        [[FOREIGN]] * 3 + [[SourceChanged(NAT, True), au(4)]],
    ),
    "never while the SDP address is sending": (
        SDP,
        True,
        [(pkt(1), SDP, 0.0), *from_(NAT, [pkt(s, ssrc=7) for s in range(1, 6)], 0.02)],
        [[au(1)]] + [[FOREIGN]] * 5,
    ),
    "the SDP address takes back over from a learned one at once": (
        SDP,
        True,
        [*from_(NAT, [pkt(s) for s in range(1, 5)]), (pkt(5), SDP, 0.1), (pkt(6), NAT, 0.12)],
        [[FOREIGN]] * 3
        + [[SourceChanged(NAT, True), au(4)], [SourceChanged(SDP, False), au(5)], [FOREIGN]],
    ),
    "strict off: the first valid packet latches, junk never, then nobody else": (
        None,
        False,
        [(b"junk", STRANGER, 0.0), (pkt(1), NAT, 0.01), (pkt(2, ssrc=9), STRANGER, 0.02)],
        [[FOREIGN], [SourceChanged(NAT, True), au(1)], [FOREIGN]],
    ),
}


@pytest.mark.parametrize(
    ("remote", "strict", "steps", "expected"),
    list(SOURCE_CASES.values()),
    ids=list(SOURCE_CASES),
)
def test_whose_packets_are_heard(remote, strict, steps, expected) -> None:
    rx = receiver(remote, strict=strict)
    assert feed(rx, steps) == expected
    learned = [o for answer in expected for o in answer if isinstance(o, SourceChanged)]
    assert rx.remote == (learned[-1].addr if learned else remote)
    assert rx.stats.foreign_source == sum(answer == [FOREIGN] for answer in expected)
    assert rx.stats.sources_learned == sum(change.learned for change in learned)


def test_a_move_in_the_sdp_is_heard_at_once_and_the_old_address_must_learn_again() -> None:
    rx = receiver(SDP)
    moved = ("192.0.2.20", 4002)
    assert feed(rx, from_(SDP, [pkt(1)])) == [[au(1)]]
    rx.moved(moved)
    assert rx.remote == moved
    assert feed(rx, [(pkt(2, ssrc=1), SDP, 0.02), (pkt(2), moved, 0.04)]) == [[FOREIGN], [au(2)]]


# --- the flood bucket ---------------------------------------------------------------------------


def test_a_flood_is_cut_to_twice_the_packet_rate_after_a_second_of_burst() -> None:
    rx = receiver(SDP)  # 20 ms: 50 packets a second; 100 a second sustained, a burst of 50
    burst = feed(rx, [(pkt(s), SDP, 0.0) for s in range(1, 51)])
    assert burst == [[au(s)] for s in range(1, 51)]
    assert feed(rx, [(pkt(51), SDP, 0.0), (pkt(52), SDP, 0.0)]) == [
        [Drop.FLOOD, Signal.FLOOD_STARTED],  # said once
        [Drop.FLOOD],
    ]
    # 10 ms later one token is back (100 a second): one packet through, the next one not.
    assert feed(rx, [(pkt(53), SDP, 0.01), (pkt(54), SDP, 0.01)])[1] == [Drop.FLOOD]
    assert rx.stats.flood_dropped == 3 and rx.flood_rate == 100.0


def test_a_flood_costs_no_srtp_work_and_is_not_heard_as_the_caller() -> None:
    caller, ours = srtp_pair()
    rx = receiver(SDP, srtp=ours)
    rx.flood_tokens = 0.0  # the bucket is empty
    protected = caller.protect(pkt(1))
    assert feed(rx, [(protected, SDP, 0.0)]) == [[Drop.FLOOD, Signal.FLOOD_STARTED]]
    assert rx.last_rx == 0.0 and rx.guard.heard_at is None
    # libsrtp never saw it: the same packet is no replay once the bucket has a token.
    assert feed(rx, [(protected, SDP, 0.05)]) == [[au(1)]]
    assert rx.stats.srtp_replayed == 0


# --- in order: reorder buffer, duplicates, old packets, SSRC changes ----------------------------

REORDER_CASES = {
    "in order": ([1, 2, 3], [[au(1)], [au(2)], [au(3)]]),
    "one early packet waits for the missing one": ([1, 3, 2], [[au(1)], [WAIT], [au(2), au(3)]]),
    "a duplicate of a waiting packet": ([1, 3, 3, 2], [[au(1)], [WAIT], [WAIT], [au(2), au(3)]]),
    "a duplicate of a delivered packet": ([1, 2, 2, 3], [[au(1)], [au(2)], [], [au(3)]]),
    "an old sequence number": ([5, 6, 7, 2], [[au(5)], [au(6)], [au(7)], []]),
    "a gap closed late, in reverse": (
        [1, 4, 3, 2],
        [[au(1)], [WAIT], [WAIT], [au(2), au(3), au(4)]],
    ),
}


@pytest.mark.parametrize(
    ("seqs", "expected"), list(REORDER_CASES.values()), ids=list(REORDER_CASES)
)
def test_packets_come_out_in_sequence_order(seqs, expected) -> None:
    rx = receiver(SDP)
    assert feed(rx, from_(SDP, [pkt(s) for s in seqs])) == expected
    assert rx.deadline is None  # nothing left waiting


def test_a_gap_that_never_closes_is_given_up_after_60_ms_and_filled_with_silence() -> None:
    rx = receiver(SDP)
    assert feed(rx, [(pkt(1), SDP, 0.0), (pkt(3), SDP, 0.04)]) == [[au(1)], [WAIT]]
    assert rx.deadline == pytest.approx(0.1)
    assert list(rx.poll(0.099)) == [WAIT]  # still waiting: the shell arms its timer again
    assert list(rx.poll(0.1)) == [fill(N), au(3)]
    assert rx.reorder.stats.lost == 1 and rx.audio_clock.filled_samples == N
    assert feed(rx, [(pkt(2), SDP, 0.12)]) == [[]]  # it came after all: too late


def test_sequence_numbers_wrap() -> None:
    rx = receiver(SDP)
    steps = from_(SDP, [pkt(s, au(i), ts=i * N) for i, s in enumerate([65534, 65535, 0, 1])])
    assert feed(rx, steps) == [[au(0)], [au(1)], [au(2)], [au(3)]]


def test_a_new_ssrc_starts_its_own_sequence_and_timeline() -> None:
    rx = receiver(SDP)
    steps = from_(SDP, [pkt(1), pkt(2), pkt(9000, au(3), ts=0x12345678, ssrc=0xBEEF),
                        pkt(9001, au(4), ts=0x12345678 + N, ssrc=0xBEEF)])  # fmt: skip
    assert feed(rx, steps) == [[au(1)], [au(2)], [au(3)], [au(4)]]  # no gap filled between
    assert rx.reorder.stats.ssrc_changes == 1 and rx.audio_clock.filled_samples == 0


def test_a_gap_in_the_timestamps_is_filled_before_the_audio() -> None:
    rx = receiver(SDP)
    steps = from_(SDP, [pkt(1), pkt(2, ts=2 * N + 160), pkt(3, ts=3 * N + 160)])
    assert feed(rx, steps) == [[au(1)], [fill(160), au(2)], [au(3)]]
    assert rx.summary()["filled_ms"] == 20


# --- what a header may carry: the short path takes only a plain one -----------------------------

HEADER_CASES = {
    "marker bit": (pkt(2, marker=True), [au(2)]),
    "CSRCs are not audio": (pkt(2, csrcs=[0xDEADBEEF, 0xFEEDFACE]), [au(2)]),
    "a header extension is not audio": (pkt(2, extension=b"\x10\xaa\xbb\xcc"), [au(2)]),
    "padding is not audio": (pkt(2, padding=4), [au(2)]),
    "all of them": (pkt(2, csrcs=[1], extension=bytes(8), padding=3), [au(2)]),
    "CSRCs that overrun the packet": (pkt(2, b"", csrcs=[1, 2, 3])[:20], [MALFORMED]),
    "an extension that overruns the packet": (pkt(2, b"", extension=bytes(8))[:18], [MALFORMED]),
    "a padding count of zero": (pkt(2, padding=1)[:-1] + b"\x00", [MALFORMED]),
    "more padding than packet": (pkt(2, padding=1)[:-1] + b"\xff", [MALFORMED]),
    "version 1": (pkt(2, version=1), [MALFORMED]),
    "shorter than a header": (pkt(2)[:11], [MALFORMED]),
    "comfort noise": (pkt(2, b"\x40", pt=CN_PT), [Drop.COMFORT_NOISE]),
    "a payload type we did not offer": (pkt(2, pt=8), [Drop.OTHER_PAYLOAD]),
}


@pytest.mark.parametrize(
    ("second", "expected"), list(HEADER_CASES.values()), ids=list(HEADER_CASES)
)
def test_what_a_header_carries_after_an_established_packet(second, expected) -> None:
    """Packet 2 would take the short path were its header plain."""
    rx = receiver(SDP)
    assert feed(rx, [(pkt(1), SDP, 0.0), (second, SDP, 0.02)]) == [[au(1)], expected]
    counter = expected[0].value if isinstance(expected[0], Drop) else None
    if counter is not None:
        assert getattr(rx.stats, counter) == 1


# --- key presses (RFC 4733) ---------------------------------------------------------------------

DTMF_CASES = {
    "updates, then the end sent three times: one digit": (
        [
            key(2, 5, 400),
            key(3, 5, 800),
            key(4, 5, 800, end=True),
            key(5, 5, 800, end=True),
            key(6, 5, 800, end=True),
            pkt(7, ts=16 + 800),
        ],
        [[], [], [DtmfEvent("5", 100)], [], [], [fill(800), au(7)]],
    ),
    "every end packet lost: the digit once the audio is 200 ms past it": (
        [key(2, 11, 400), key(3, 11, 400), pkt(4, ts=16 + 400 + 1600)],
        [[], [], [fill(2000), DtmfEvent("#", 50, end_seen=False), au(4)]],
    ),
    "audio beside a key press whose end was lost: the digit once the audio is past it": (
        [key(2, 5, 400), pkt(3, au(3) * 250, ts=16), pkt(4, ts=16 + 2000)],
        [[], [au(3) * 250], [DtmfEvent("5", 50, end_seen=False), au(4)]],
    ),
    "a new key press ends one whose end was lost": (
        [key(2, 1, 400), key(3, 2, 400, ts=500), key(4, 2, 480, end=True, ts=500)],
        [[], [DtmfEvent("1", 50, end_seen=False)], [DtmfEvent("2", 60)]],
    ),
    "hook flash": ([key(2, 16, 800, end=True)], [[DtmfEvent("flash", 100)]]),
    "an event we did not offer is no digit": ([key(2, 40, 800, end=True)], [[]]),
    "a key press packet too short to read": ([pkt(2, b"\x05\x8a", pt=DTMF_PT)], [[]]),
}


@pytest.mark.parametrize(("steps", "expected"), list(DTMF_CASES.values()), ids=list(DTMF_CASES))
def test_key_presses(steps, expected) -> None:
    rx = receiver(SDP)
    answers = feed(rx, from_(SDP, [pkt(1), *steps]))
    assert answers == [[au(1)], *expected]
    digits = [o for answer in answers for o in answer if isinstance(o, DtmfEvent)]
    assert rx.stats.dtmf_events == len(digits)


def test_key_presses_share_the_audio_sequence_and_wait_in_the_reorder_buffer() -> None:
    rx = receiver(SDP)
    steps = from_(SDP, [pkt(1), key(3, 7, 800, end=True), key(2, 7, 400)])
    assert feed(rx, steps) == [[au(1)], [WAIT], [DtmfEvent("7", 100)]]


# --- SRTP ---------------------------------------------------------------------------------------


def srtp_pair() -> tuple[SrtpSession, SrtpSession]:
    """The caller's session and ours (each one's local key is the other's remote)."""
    theirs, ours = (CryptoAttribute.generate(1, "AES_CM_128_HMAC_SHA1_80") for _ in range(2))
    return SrtpSession(theirs, ours), SrtpSession(ours, theirs)


def test_srtp_drops_are_counted_by_kind_and_teach_no_source() -> None:
    caller, ours = srtp_pair()
    rx = receiver(SDP, srtp=ours)
    first, second = caller.protect(pkt(1)), caller.protect(pkt(2))
    forged = bytearray(caller.protect(pkt(3)))
    forged[14] ^= 0xFF  # a payload byte flipped: the tag no longer matches
    rtcp = caller.protect_rtcp(bytes([0x80, 201, 0, 1, 0, 0, 4, 210]))
    strangers = [RtpSender(PT, N, ssrc=1, sequence=s).build(au(9)) for s in range(10, 16)]
    steps = [
        (first, SDP, 0.0),
        (first, SDP, 0.02),
        (bytes(forged), SDP, 0.04),
        (rtcp, SDP, 0.06),
        (b"\x80", SDP, 0.08),
        (second, SDP, 0.1),
        *[(bytes(p) + bytes(10), STRANGER, 0.1 + i * 0.02) for i, p in enumerate(strangers)],
    ]
    assert feed(rx, steps) == [
        [au(1)],
        [Drop.SRTP_REPLAY],
        [Drop.SRTP_AUTH],
        [Drop.RTCP],
        [MALFORMED],
        [au(2)],
        *[[Drop.SRTP_AUTH]] * 6,  # forged: never a candidate, whatever its clear header says
    ]
    s = rx.stats
    assert (s.srtp_replayed, s.srtp_auth_failures, s.rtcp_dropped, s.malformed) == (1, 7, 1, 1)
    assert s.foreign_source == 0 and s.sources_learned == 0 and rx.remote == SDP


def test_an_authentic_srtp_source_behind_a_nat_is_learned() -> None:
    caller, ours = srtp_pair()
    rx = receiver(SDP, srtp=ours)
    steps = from_(NAT, [caller.protect(pkt(s)) for s in range(1, 5)])
    assert feed(rx, steps)[-1] == [SourceChanged(NAT, True), au(4)]


# --- the RTP timeout's clock and hold -----------------------------------------------------------


def test_silence_is_counted_from_the_last_accepted_packet_and_not_while_held() -> None:
    rx = receiver(SDP)
    rx.timeout_from(10.0)  # the answer
    assert rx.silent_for(12.0) == 2.0
    feed(rx, [(pkt(1), SDP, 13.0), (pkt(1, ssrc=5), STRANGER, 14.0)])  # a stranger is no one
    assert rx.silent_for(14.5) == 1.5
    assert [rx.hold(True, 15.0), rx.hold(True, 15.5)] == [True, False]  # changed, then not
    assert rx.held and rx.silent_for(100.0) is None
    assert rx.hold(False, 100.0) is True and not rx.held
    assert rx.silent_for(101.0) == 1.0  # counted from the resume
    rx.timeout_from(50.0)
    assert rx.silent_for(101.0) == 1.0  # never back in time
    rx.flood_burst = rx.flood_tokens = 0.0  # a bucket that holds no token
    assert feed(rx, [(pkt(2), SDP, 102.0)]) == [[Drop.FLOOD, Signal.FLOOD_STARTED]]
    assert rx.silent_for(102.5) == 2.5


# --- the short path's answer --------------------------------------------------------------------


def test_the_short_path_answers_with_one_reused_list_and_release_lets_the_payload_go() -> None:
    rx = receiver(SDP)
    rx.receive(pkt(1), SDP, 0.0)  # the first packet of a source takes the general path
    second = rx.receive(pkt(2), SDP, 0.02)
    assert list(second) == [au(2)]
    third = rx.receive(pkt(3), SDP, 0.04)
    assert third is second and list(third) == [au(3)]
    rx.release()
    assert list(third) == [b""]


def test_an_ipv6_source_address_is_compared_by_host_and_port() -> None:
    peer = ("2001:db8::1", 4000)
    rx = receiver(peer)
    assert feed(rx, [(pkt(1), ("2001:db8::1", 4000, 0, 0), 0.0)]) == [[au(1)]]
