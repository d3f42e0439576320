"""RtpStream on real loopback sockets: strict RTP, reordering, DTMF, payload types, the pacer,
random ports."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import struct
from collections.abc import AsyncIterator

import numpy as np
import pytest

from gateway.media.g711 import PCMU
from gateway.media.rtp import RtpSender, parse_rtp
from gateway.media.stream import PortAllocator, RtpStream
from tests.integration.peers import LOOPBACK, free_port_block

SSRC = 0xCAFE


class Received:
    """What the stream handed up: payloads and key presses, with an event per arrival."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.digits: list[tuple[str, int]] = []
        self.changed = asyncio.Event()

    def payload(self, data: bytes) -> None:
        self.payloads.append(data)
        self.changed.set()

    def dtmf(self, digit: str, duration_ms: int) -> None:
        self.digits.append((digit, duration_ms))
        self.changed.set()

    async def until(self, condition, timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def peer(host: str = LOOPBACK) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def answered(s: RtpStream, host: str = LOOPBACK) -> socket.socket:
    """The caller's socket, named in its SDP (what the stream hears from at once)."""
    sock = peer(host)
    s.set_remote(sock.getsockname())
    return sock


def pending(sock: socket.socket) -> bytes:
    """Whatever the socket has received by now (b"" when nothing)."""
    try:
        return sock.recv(2048)
    except BlockingIOError:
        return b""


@pytest.fixture
async def stream() -> AsyncIterator[tuple[RtpStream, Received]]:
    got = Received()
    base = free_port_block(4)
    s = await RtpStream.open(
        PortAllocator(base, base + 3),
        LOOPBACK,
        lambda: RtpStream(PCMU, 0, None, got.payload, 20, dtmf_payload_type=101),
    )
    s.on_dtmf = got.dtmf
    yield s, got
    s.close()


def packet(
    seq: int,
    payload: bytes = b"\x00" * 160,
    *,
    pt: int = 0,
    ts: int | None = None,
    ssrc: int = SSRC,
) -> bytes:
    ts = seq * 160 if ts is None else ts
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def frame(n: int) -> bytes:
    return bytes([n]) * 160


async def test_the_sdp_address_is_heard_at_once_and_no_one_else(stream) -> None:
    s, got = stream
    caller, intruder = answered(s), peer("127.0.0.2")
    with caller, intruder:
        intruder.sendto(b"\x00", (LOOPBACK, s.port))  # one junk byte used to take the call
        intruder.sendto(packet(1, frame(99)), (LOOPBACK, s.port))  # and RTP injection
        caller.sendto(packet(1, frame(1)), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 1)
        assert s.remote == caller.getsockname()
        intruder.sendto(packet(2, frame(99)), (LOOPBACK, s.port))
        caller.sendto(packet(2, frame(2)), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 2)
        assert got.payloads == [frame(1), frame(2)]
        assert s.stats.foreign_source == 3
        # What we send goes to the caller, not the intruder.
        s.send(b"\xff" * 160)
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(caller, 2048), 2)
        assert parse_rtp(data).payload == b"\xff" * 160
        assert pending(intruder) == b""


async def test_late_offer_learns_the_caller_never_junk_nor_random_rtp(stream) -> None:
    """No SDP address yet: junk and random RTP never latch; a run of 4 valid packets does."""
    s, got = stream
    rng = random.Random(5)
    caller, intruder = peer(), peer("127.0.0.2")
    with caller, intruder:
        for _ in range(20):
            intruder.sendto(rng.randbytes(rng.randrange(1, 200)), (LOOPBACK, s.port))
            seq, ssrc = rng.randrange(65536), rng.randrange(1 << 32)
            intruder.sendto(packet(seq, frame(99), ssrc=ssrc), (LOOPBACK, s.port))
        for seq in range(1, 7):
            caller.sendto(packet(seq, frame(seq)), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 3)
        assert got.payloads == [frame(4), frame(5), frame(6)]  # 1-3 were the caller on trial
        assert s.remote == caller.getsockname()
        assert s.stats.foreign_source == 40 + 3 and s.stats.sources_learned == 1
        s.send(b"\xff" * 160)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_recv(caller, 2048), 2)
        assert pending(intruder) == b""


async def test_a_nat_source_is_learned_after_a_run_while_the_sdp_address_is_quiet(
    stream,
) -> None:
    s, got = stream
    learned: list[tuple[str, int]] = []
    s.on_peer_learned = learned.append
    advertised = answered(s)  # what the SDP says; behind a NAT it never sends
    with advertised, peer() as nat:
        for seq in range(1, 6):
            nat.sendto(packet(seq, frame(seq)), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 2)
        assert got.payloads == [frame(4), frame(5)]
        assert learned == [nat.getsockname()] and s.remote == nat.getsockname()


async def test_a_reinvite_hears_the_new_address_at_once_and_junk_still_never_latches(
    stream,
) -> None:
    s, got = stream
    first, intruder = answered(s), peer("127.0.0.2")
    with first, intruder:
        first.sendto(packet(1, frame(1)), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 1)
        moved = answered(s)  # re-INVITE: new c=/m=
        with moved:
            assert s.remote == moved.getsockname()
            intruder.sendto(b"\x80", (LOOPBACK, s.port))  # used to latch again
            moved.sendto(packet(2, frame(2)), (LOOPBACK, s.port))
            await got.until(lambda: len(got.payloads) == 2)
            assert s.remote == moved.getsockname()
            s.send(b"\xff" * 160)
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_recv(moved, 2048), 2)
            assert pending(intruder) == b"" and pending(first) == b""


async def test_strict_off_latches_on_the_first_valid_packet_but_never_on_junk() -> None:
    """media.strict_rtp false: the old symmetric latching, less the junk."""
    got = Received()
    s = RtpStream(PCMU, 0, None, got.payload, strict=False)
    s.datagram_received(b"\x00", ("127.0.0.2", 5004))
    assert s.remote is None
    s.datagram_received(packet(1, frame(1)), (LOOPBACK, 40000))
    s.datagram_received(packet(2, frame(2)), ("127.0.0.2", 5004))
    assert s.remote == (LOOPBACK, 40000) and got.payloads == [frame(1)]
    assert s.stats.foreign_source == 2 and s.stats.sources_learned == 1


async def test_reordered_packets_arrive_in_order(stream) -> None:
    s, got = stream
    with answered(s) as caller:
        for seq in (10, 12, 11, 13):
            caller.sendto(packet(seq, frame(seq)), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 4)
    assert got.payloads == [frame(10), frame(11), frame(12), frame(13)]
    assert s.reorder.stats.reordered == 1


async def test_a_lost_packet_becomes_20_ms_of_silence_within_60_ms(stream) -> None:
    s, got = stream
    loop = asyncio.get_running_loop()
    with answered(s) as caller:
        caller.sendto(packet(1, frame(1)), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 1)
        sent_at = loop.time()
        caller.sendto(packet(3, frame(3)), (LOOPBACK, s.port))  # 2 never comes
        await got.until(lambda: len(got.payloads) == 3)
        waited = loop.time() - sent_at
    assert got.payloads == [frame(1), b"\xff" * 160, frame(3)]  # PCMU silence in between
    assert s.reorder.stats.lost == 1
    assert 0.05 <= waited < 0.5  # released by the 60 ms timer, not by a later packet


async def test_duplicates_are_dropped(stream) -> None:
    s, got = stream
    with answered(s) as caller:
        for seq in (1, 1, 2, 2, 3):
            caller.sendto(packet(seq, frame(seq)), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 3)
        await got.until(lambda: s.stats.packets_in == 5)
    assert got.payloads == [frame(1), frame(2), frame(3)]


async def test_dtmf_comfort_noise_and_unknown_payload_types(stream) -> None:
    s, got = stream
    with answered(s) as caller:
        send = lambda data: caller.sendto(data, (LOOPBACK, s.port))  # noqa: E731
        send(packet(1, frame(1)))
        # Key "5" for 100 ms in place of audio (ts 320-1120): two updates, three end packets.
        for i, (duration, end) in enumerate([(400, 0), (800, 0), (800, 1), (800, 1), (800, 1)]):
            event = struct.pack("!BBH", 5, (0x80 if end else 0) | 10, duration)
            send(packet(2 + i, event, pt=101, ts=320))
        send(packet(7, b"\x40", pt=13, ts=1120))  # comfort noise (RFC 3389)
        send(packet(8, frame(8), pt=8, ts=1120))  # PCMA: not what we answered
        send(packet(9, frame(9), ts=1280))
        await got.until(lambda: len(got.payloads) >= 3 and got.digits)
    assert got.digits == [("5", 100)]
    assert s.stats.comfort_noise == 1 and s.stats.other_payload == 1
    # The timeline stays true: 960 samples from the end of packet 1 (ts 320) to packet 9.
    assert got.payloads == [frame(1), b"\xff" * 960, frame(9)]
    assert s.reorder.stats.lost == 0


def dressed(
    seq: int, audio: bytes, *, csrcs: int = 0, extension: bool = False, padding: int = 0
) -> bytes:
    """A PCMU packet whose header has what a mixer or an SBC may add (RFC 3550 §5.1, §5.3.1):
    CSRCs, a header extension, padding; ``audio`` is the payload once those are taken off."""
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | csrcs
    head = struct.pack("!BBHII", first, 0, seq & 0xFFFF, seq * 160, SSRC)
    head += b"".join(struct.pack("!I", 0xC0C0C000 + i) for i in range(csrcs))
    if extension:
        head += struct.pack("!HH", 0xBEDE, 1) + b"\xee" * 4
    tail = b"\x00" * (padding - 1) + bytes([padding]) if padding else b""
    return head + audio + tail


async def test_csrcs_extensions_and_padding_never_reach_the_bridge_as_audio(stream) -> None:
    """A packet from the caller's own source, next in sequence, with our payload type, but a
    header that is more than 12 bytes: the bridge gets the audio alone. A receive shortcut
    that took any version-2 first byte for a plain header would hand up CSRC, extension or
    padding bytes as the first samples of the frame (clicks the model hears as speech)."""
    s, got = stream
    variants = [
        {"csrcs": 1},
        {"csrcs": 15},
        {"extension": True},
        {"padding": 4},
        {"csrcs": 2, "extension": True, "padding": 1},
    ]
    with answered(s) as caller:
        caller.sendto(packet(1, frame(1)), (LOOPBACK, s.port))  # a plain one: the fast path
        for i, variant in enumerate(variants):
            caller.sendto(dressed(2 + i, frame(2 + i), **variant), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 1 + len(variants))
    for i, (payload, want) in enumerate(
        zip(got.payloads, [frame(n) for n in range(1, 7)], strict=True)
    ):
        variant = variants[i - 1] if i else "plain"
        assert payload == want, (
            f"packet {i + 1} ({variant}) reached the bridge as {payload[:8]!r}..."
        )
    assert s.stats.malformed == 0


async def test_malformed_datagrams_are_counted_not_fatal(stream) -> None:
    s, got = stream
    with answered(s) as caller:
        caller.sendto(b"\x00\x01", (LOOPBACK, s.port))
        caller.sendto(packet(1, frame(1)), (LOOPBACK, s.port))
        await got.until(lambda: len(got.payloads) == 1)
    assert s.stats.malformed == 1


# --- the pacer -------------------------------------------------------------------------------


class Script:
    """A frame source: talk spurts and silences, as the playback buffer would give them."""

    def __init__(self, pattern: str, samples: int) -> None:
        self.pattern = pattern  # "s" = silence, "t" = talk
        self.frame = np.full(samples, 1000, np.int16)
        self.i = 0

    def next_frame(self) -> np.ndarray | None:
        kind = self.pattern[self.i % len(self.pattern)]
        self.i += 1
        return None if kind == "s" else self.frame


@pytest.mark.parametrize("ptime", [20, 30])
async def test_pacer_ptime_marker_and_continuous_timestamps(ptime: int) -> None:
    base = free_port_block(4)
    samples = 8 * ptime
    with peer() as caller:
        s = await RtpStream.open(
            PortAllocator(base, base + 3),
            LOOPBACK,
            lambda: RtpStream(PCMU, 0, caller.getsockname(), lambda _: None, ptime),
        )
        s._out.sender = RtpSender(0, samples, sequence=65530, timestamp=0xFFFFFF00)
        pacer = asyncio.create_task(s.pace(Script("sstttsstt", samples)))
        loop = asyncio.get_running_loop()
        packets = []
        try:
            async with asyncio.timeout(5):
                while len(packets) < 18:
                    packets.append(parse_rtp(await loop.sock_recv(caller, 2048)))
        finally:
            pacer.cancel()
            s.close()
    assert all(len(p.payload) == samples for p in packets)
    assert [p.sequence for p in packets] == [(65530 + i) & 0xFFFF for i in range(18)]
    assert [p.timestamp for p in packets] == [
        (0xFFFFFF00 + i * samples) & 0xFFFFFFFF for i in range(18)
    ]
    markers = "".join("M" if p.marker else "." for p in packets)
    assert markers == "..M....M...M....M."  # first packet of each talk spurt (RFC 3551 §4.1)


class Frames:
    """A frame source of given frames, then silence."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames

    def next_frame(self) -> np.ndarray | None:
        return self.frames.pop(0) if self.frames else None


async def test_every_frame_goes_out_encoded_whatever_its_layout() -> None:
    """The pacer's packets (sent in C where the module is built: ``_dsp.send_rtp``) carry
    exactly the codec's encoding of each frame: contiguous, a strided view (encoded by the
    codec instead), then G.711 silence."""
    base = free_port_block(4)
    rng = np.random.default_rng(19)
    wide = rng.integers(-32768, 32768, 320, dtype=np.int16)
    frames = [rng.integers(-32768, 32768, 160, dtype=np.int16), wide[::2], wide[:160]]
    expected = [PCMU.encode(np.ascontiguousarray(f)) for f in frames] + [b"\xff" * 160]
    with peer() as caller:
        s = await RtpStream.open(
            PortAllocator(base, base + 3),
            LOOPBACK,
            lambda: RtpStream(PCMU, 0, caller.getsockname(), lambda _: None, 20),
        )
        pacer = asyncio.create_task(s.pace(Frames(list(frames))))
        loop = asyncio.get_running_loop()
        packets = []
        try:
            async with asyncio.timeout(5):
                while len(packets) < 4:
                    packets.append(parse_rtp(await loop.sock_recv(caller, 2048)))
        finally:
            pacer.cancel()
            s.close()
    assert [bytes(p.payload) for p in packets] == expected
    assert [p.marker for p in packets] == [True, False, False, False]
    assert s.stats.packets_out >= 4 and s.stats.send_errors == 0


async def test_a_refused_send_is_counted_and_the_clock_runs_on() -> None:
    """A peer the socket cannot reach (here an IPv6 one on an IPv4 socket): the packet is
    dropped and counted, never raised into the pacer, and the next one follows in sequence."""
    base = free_port_block(4)
    with peer() as caller:
        s = await RtpStream.open(
            PortAllocator(base, base + 3),
            LOOPBACK,
            lambda: RtpStream(PCMU, 0, ("2001:db8::9", 5004), lambda _: None, 20),
        )
        try:
            s._out.sender = RtpSender(0, 160, sequence=100, timestamp=0)
            s.send(b"\xff" * 160)
            s.send(PCMU.encode(np.zeros(160, np.int16)))
            assert (s.stats.send_errors, s.stats.packets_out) == (2, 0)
            s.set_remote(caller.getsockname())
            s.send(b"\xff" * 160)
            async with asyncio.timeout(5):
                got = parse_rtp(await asyncio.get_running_loop().sock_recv(caller, 2048))
        finally:
            s.close()
    assert (got.sequence, got.timestamp) == (102, 320)
    assert (s.stats.send_errors, s.stats.packets_out) == (2, 1)


async def test_a_flood_from_the_caller_is_cut_to_twice_the_packet_rate(stream) -> None:
    """A burst of a second's worth passes, then no more than 2x the ptime rate."""
    s, got = stream
    floods: list[int] = []
    s.on_flood = lambda: floods.append(s.stats.packets_in)
    caller = (LOOPBACK, 40000)
    s.set_remote(caller)
    for seq in range(200):  # all within microseconds: far beyond 100 packets/s
        s.datagram_received(packet(seq, frame(seq % 256)), caller)
    assert s.stats.packets_in == 50  # the burst allowance: one second at 20 ms
    assert s.stats.flood_dropped == 150 and len(got.payloads) == 50
    assert len(floods) == 1  # reported once, counted always


async def test_a_hold_stops_the_rtp_timeout_count_and_the_resume_restarts_it(stream) -> None:
    """The call's limits read the receiver's count (bridge/call_limits.py); the stream's hold
    is what it counts by, and the listener hears each change once."""
    s, _ = stream
    heard: list[bool] = []
    s.on_hold = heard.append
    loop = asyncio.get_running_loop()
    s.set_sending(False)
    s.set_sending(False)  # a refresh of the same hold
    assert s.receiver.silent_for(loop.time() + 100) is None
    resumed = loop.time()
    s.set_sending(True)
    assert 0 <= s.receiver.silent_for(resumed + 1.0) <= 1.0
    assert heard == [True, False]


async def test_a_closed_stream_lets_go_of_its_listeners(stream) -> None:
    s, got = stream
    s.close()
    assert s.on_payload != got.payload and s.on_dtmf != got.dtmf
    s.on_payload(b"late")  # a packet racing the close reaches no one
    assert got.payloads == []


async def test_holds_and_resumes_are_reported_once_each(stream) -> None:
    s, _ = stream
    changes: list[bool] = []
    s.on_hold = changes.append
    s.set_sending(True)  # not held: nothing changes
    s.set_sending(False)
    s.set_sending(False)  # a hold refreshed by a re-INVITE
    s.set_sending(True)
    assert changes == [True, False]


# --- ports -----------------------------------------------------------------------------------


def test_ports_are_handed_out_at_random_each_free_one_once() -> None:
    allocator = PortAllocator(20000, 20200)
    evens = set(range(20000, 20200, 2))
    taken = []
    for _ in range(50):
        port = next(allocator.candidates())
        allocator.take(port)
        taken.append(port)
    assert len(set(taken)) == 50 and set(taken) <= evens
    # In order, each port is the last one + 2 (a sprayer's guess); at random, about 1 in 100.
    assert sum(b == a + 2 for a, b in itertools.pairwise(taken)) < 10
    rest = list(allocator.candidates())
    assert sorted(rest) == sorted(evens - set(taken))
    allocator.release(taken[0])
    assert taken[0] in set(allocator.candidates())


async def test_open_tries_the_next_random_port_when_one_is_taken() -> None:
    base = free_port_block(4)
    allocator = PortAllocator(base, base + 3)  # two even ports
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind((LOOPBACK, base + (base % 2)))  # someone else holds one of the two
        s = await RtpStream.open(
            allocator, LOOPBACK, lambda: RtpStream(PCMU, 0, None, lambda _: None)
        )
        try:
            assert s.port == base + (base % 2) + 2 and allocator.in_use == 1
        finally:
            s.close()
