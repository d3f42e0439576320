"""RTP packets: hand-built RFC 3550 layouts, the sender's counters, malformed input, fuzzing."""

from __future__ import annotations

import struct
from array import array

import numpy as np
import pytest

from gateway.media.rtp import (
    MAX_PACKET_SIZE,
    RtpPacket,
    RtpParseError,
    RtpSender,
    parse_rtp,
)

# Every optional part of RFC 3550 §5.1/§5.3.1 at once, written out field by field.
FULL_PACKET = bytes.fromhex(
    "b2"  # V=2 (10), P=1, X=1, CC=2 (0010)
    "80"  # M=1, PT=0 (PCMU)
    "1234"  # sequence number 4660
    "deadbeef"  # timestamp
    "01020304"  # SSRC
    "0a0b0c0d"  # CSRC 1
    "11223344"  # CSRC 2
    "bede0001"  # extension: profile 0xBEDE (RFC 8285 one-byte form), length 1 word
    "10aa0000"  # extension data (one 32-bit word)
    "ffd5ff7f"  # payload: 4 bytes
    "00000004"  # padding: 4 octets, the last one counts them all, itself included
)


def header(
    *, version: int = 2, padding: bool = False, ext: bool = False, cc: int = 0, pt: int = 0
) -> bytes:
    first = version << 6 | padding << 5 | ext << 4 | cc
    return struct.pack("!BBHII", first, pt, 1, 2, 3)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_hand_built_packet_with_csrcs_extension_and_padding() -> None:
    p = parse_rtp(FULL_PACKET)
    assert (p.payload_type, p.sequence, p.timestamp, p.ssrc, p.marker) == (
        0,
        0x1234,
        0xDEADBEEF,
        0x01020304,
        True,
    )
    assert p.csrcs == (0x0A0B0C0D, 0x11223344)
    assert p.extension == (0xBEDE, b"\x10\xaa\x00\x00")
    assert bytes(p.payload) == b"\xff\xd5\xff\x7f"


def test_parse_minimal_packet() -> None:
    data = bytes.fromhex("80 08 ffff 00000000 ffffffff") + b"\xd5" * 160
    p = parse_rtp(data)
    assert p == RtpPacket(8, 0xFFFF, 0, 0xFFFFFFFF, False, b"\xd5" * 160)
    assert p.csrcs == () and p.extension is None


def test_parse_accepts_any_bytes_like() -> None:
    for data in (
        bytearray(FULL_PACKET),
        memoryview(FULL_PACKET),
        memoryview(b"xx" + FULL_PACKET)[2:],
    ):
        assert parse_rtp(data) == parse_rtp(FULL_PACKET)
    # A memoryview whose items are not bytes is read as its raw bytes.
    words = array("h")
    words.frombytes(FULL_PACKET)
    assert parse_rtp(memoryview(words)) == parse_rtp(FULL_PACKET)
    assert parse_rtp(memoryview(FULL_PACKET).cast("c")) == parse_rtp(FULL_PACKET)
    assert parse_rtp(memoryview(FULL_PACKET).cast("b")) == parse_rtp(FULL_PACKET)


def test_payload_is_a_view_not_a_copy() -> None:
    data = bytearray(FULL_PACKET)
    p = parse_rtp(data)
    assert isinstance(p.payload, memoryview)
    data[-8] = 0x00
    assert bytes(p.payload)[0] == 0x00


def test_padding_may_take_everything_after_the_header() -> None:
    p = parse_rtp(header(padding=True) + b"\x00\x00\x03")
    assert bytes(p.payload) == b""


def test_zero_length_extension() -> None:
    p = parse_rtp(header(ext=True) + b"\x10\x00\x00\x00" + b"pay")
    assert p.extension == (0x1000, b"") and bytes(p.payload) == b"pay"


MALFORMED = {
    "empty": b"",
    "11 bytes": header()[:11],
    "version 0": header(version=0) + b"x",
    "version 1": header(version=1) + b"x",
    "version 3": header(version=3) + b"x",
    "CSRC list past the end": header(cc=15),
    "CSRC list one byte short": header(cc=1) + b"\x00\x00\x00",
    "no room for extension header": header(ext=True) + b"\xbe\xde\x00",
    "extension data past the end": header(ext=True) + b"\xbe\xde\x00\x02" + b"\x00" * 7,
    "extension after CSRCs past the end": header(cc=1, ext=True) + b"\x00" * 4 + b"\xbe",
    "padding bit, count 0": header(padding=True) + b"payload\x00",
    "padding count beyond payload": header(padding=True) + b"\x01\x05",
    "padding bit, nothing after header": header(padding=True),
    "padding count eats the extension": header(ext=True, padding=True)
    + b"\xbe\xde\x00\x01"
    + b"\x00\x00\x00\x06",
    "padding count eats the CSRCs": header(cc=1, padding=True) + b"\x00\x00\x00\x05",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_packets_raise_rtp_parse_error(data: bytes) -> None:
    with pytest.raises(RtpParseError):
        parse_rtp(data)


def test_rtp_parse_error_is_a_value_error() -> None:
    assert issubclass(RtpParseError, ValueError)


def _check_consistent(data: bytes, p: RtpPacket) -> None:
    assert 0 <= p.payload_type <= 127 and 0 <= p.sequence <= 0xFFFF
    assert 0 <= p.timestamp <= 0xFFFFFFFF and 0 <= p.ssrc <= 0xFFFFFFFF
    used = 12 + 4 * len(p.csrcs) + len(p.payload)
    if p.extension is not None:
        used += 4 + len(p.extension[1])
    padding = data[-1] if data[0] & 0x20 else 0
    assert used + padding == len(data)


def test_fuzz_random_bytes_raise_nothing_but_rtp_parse_error() -> None:
    rng = np.random.default_rng(20240521)
    parsed = rejected = 0
    for i in range(20_000):
        data = bytearray(rng.integers(0, 256, size=int(rng.integers(0, 201)), dtype=np.uint8))
        if i % 2 and data:
            data[0] = 0x80 | (data[0] & 0x3F)  # version 2, so the deeper checks run too
        try:
            p = parse_rtp(bytes(data))
        except RtpParseError:
            rejected += 1
        else:
            parsed += 1
            _check_consistent(bytes(data), p)
    print(f"\nfuzz random: {parsed} parsed, {rejected} rejected")
    assert parsed > 1000 and rejected > 1000


def test_fuzz_mutated_valid_packet_raises_nothing_but_rtp_parse_error() -> None:
    rng = np.random.default_rng(3550)
    base = np.frombuffer(FULL_PACKET, dtype=np.uint8)
    parsed = rejected = 0
    for _ in range(20_000):
        data = base.copy()
        for _ in range(int(rng.integers(1, 4))):
            data[rng.integers(0, len(data))] = rng.integers(0, 256)
        data[0] = 0x80 | (data[0] & 0x3F) if rng.random() < 0.8 else data[0]
        raw = (
            data.tobytes()[: int(rng.integers(0, len(data) + 1))]
            if rng.random() < 0.3
            else data.tobytes()
        )
        try:
            p = parse_rtp(raw)
        except RtpParseError:
            rejected += 1
        else:
            parsed += 1
            _check_consistent(raw, p)
    print(f"\nfuzz mutations: {parsed} parsed, {rejected} rejected")
    assert parsed > 1000 and rejected > 1000


# --- building --------------------------------------------------------------------------------


def test_build_parse_round_trip() -> None:
    s = RtpSender(8, 160, ssrc=0xCAFEBABE, sequence=100, timestamp=5000)
    payload = bytes(range(160))
    p = parse_rtp(bytes(s.build(payload)))
    assert p == RtpPacket(8, 100, 5000, 0xCAFEBABE, False, payload)
    p = parse_rtp(bytes(s.build(bytearray(payload))))
    assert (p.sequence, p.timestamp) == (101, 5160)
    assert (s.sequence, s.timestamp, s.ssrc, s.payload_type) == (102, 5320, 0xCAFEBABE, 8)


def test_header_bytes_on_the_wire() -> None:
    s = RtpSender(0, 160, ssrc=0x01020304, sequence=0x1234, timestamp=0xDEADBEEF)
    assert bytes(s.build(b"\xff\xfe", marker=True)) == bytes.fromhex(
        "80 80 1234 deadbeef 01020304 fffe"
    )


def test_sequence_and_timestamp_wrap() -> None:
    s = RtpSender(0, 160, ssrc=1, sequence=65534, timestamp=2**32 - 200)
    got = [
        (p.sequence, p.timestamp) for p in (parse_rtp(bytes(s.build(b"\xff"))) for _ in range(3))
    ]
    assert got == [(65534, 2**32 - 200), (65535, 2**32 - 40), (0, 120)]


def test_marker_bit_only_where_asked() -> None:
    s = RtpSender(0, ssrc=1, sequence=0, timestamp=0)
    first = parse_rtp(bytes(s.build(b"\xff", marker=True)))
    second = parse_rtp(bytes(s.build(b"\xff")))
    assert first.marker and not second.marker
    assert first.payload_type == second.payload_type == 0


def test_build_reuses_one_buffer() -> None:
    s = RtpSender(0, ssrc=1, sequence=0, timestamp=0)
    a = s.build(b"\x01" * 160)
    a_bytes = bytes(a)
    b = s.build(b"\x02" * 20)
    assert a.obj is b.obj  # same pre-allocated bytearray
    assert len(a) == 172 and len(b) == 32
    assert bytes(a) != a_bytes  # the old view now shows the new packet: copy it if you keep it


def test_build_accepts_memoryview_and_numpy_payloads() -> None:
    s = RtpSender(0, ssrc=1, sequence=0, timestamp=0)
    codes = np.arange(160, dtype=np.uint8)
    assert bytes(parse_rtp(bytes(s.build(codes))).payload) == codes.tobytes()  # type: ignore[arg-type]
    assert bytes(parse_rtp(bytes(s.build(memoryview(b"..abc")[2:]))).payload) == b"abc"
    assert bytes(parse_rtp(bytes(s.build(b""))).payload) == b""


def test_oversized_payload_is_refused_without_advancing() -> None:
    s = RtpSender(0, ssrc=1, sequence=7, timestamp=70)
    s.build(b"\x00" * (MAX_PACKET_SIZE - 12))
    with pytest.raises(ValueError, match="exceeds"):
        s.build(b"\x00" * (MAX_PACKET_SIZE - 11))
    assert (s.sequence, s.timestamp) == (8, 230)


def test_build_event_uses_its_own_timestamp_and_payload_type() -> None:
    """RFC 4733 §2.5.1: every packet of one event carries the event's start timestamp."""
    s = RtpSender(0, 160, ssrc=9, sequence=10, timestamp=1000)
    s.build(b"\xff")
    events = [
        parse_rtp(
            bytes(s.build_event(b"\x05\x0a\x00\xa0", marker=m, timestamp=1160, payload_type=101))
        )
        for m in (True, False, False)
    ]
    assert [(e.sequence, e.timestamp, e.payload_type, e.marker) for e in events] == [
        (11, 1160, 101, True),
        (12, 1160, 101, False),
        (13, 1160, 101, False),
    ]
    media = parse_rtp(bytes(s.build(b"\xff")))
    assert (media.sequence, media.timestamp, media.payload_type) == (14, 1160, 0)
    with pytest.raises(ValueError):
        s.build_event(b"", marker=False, timestamp=2**32, payload_type=101)
    with pytest.raises(ValueError):
        s.build_event(b"", marker=False, timestamp=0, payload_type=128)


def test_counters_can_be_moved_on_and_wrap() -> None:
    """The pacer skips timestamps after a stalled loop (gateway/media/stream.py)."""
    s = RtpSender(0, ssrc=1, sequence=0, timestamp=2**32 - 1)
    s.timestamp = s.timestamp + 161
    s.sequence = 65536 + 5
    p = parse_rtp(bytes(s.build(b"\xff")))
    assert (p.sequence, p.timestamp) == (5, 160)


def test_random_initial_values() -> None:
    """RFC 3550 §5.1 and §8.1: sequence, timestamp and SSRC start unpredictable."""
    senders = [RtpSender(0) for _ in range(8)]
    for s in senders:
        assert 0 <= s.sequence <= 0xFFFF and 0 <= s.timestamp <= 0xFFFFFFFF
        assert 0 <= s.ssrc <= 0xFFFFFFFF
    assert len({(s.ssrc, s.sequence, s.timestamp) for s in senders}) == 8
    assert len({s.ssrc for s in senders}) > 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_type": 128},
        {"payload_type": -1},
        {"payload_type": 0, "samples_per_packet": 0},
        {"payload_type": 0, "ssrc": 2**32},
        {"payload_type": 0, "sequence": 65536},
        {"payload_type": 0, "timestamp": -1},
        {"payload_type": True},
    ],
)
def test_invalid_sender_arguments(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RtpSender(**kwargs)


def test_sender_identity_is_read_only() -> None:
    s = RtpSender(0)
    with pytest.raises(AttributeError):
        s.ssrc = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.payload_type = 8  # type: ignore[misc]
