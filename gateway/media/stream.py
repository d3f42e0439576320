"""The call leg's RTP socket: receive from the peer only, reorder, and a pacer on an absolute
clock.

Receive: strict RTP (``source.py``: the SDP's address at once, another one, a NAT's, only once
it has sent a run of valid packets while the first was quiet; anything else dropped), then
the reorder buffer, then by payload type: audio (with silence where the caller's timeline has
a gap), RFC 4733 key presses, comfort noise and anything else counted and dropped.

Send: one packet per ptime for the whole call, silence when there is nothing to play: a PBX
hangs up on an RTP timeout, and a steady clock is what makes the caller hear the model without
gaps or drift.

The socket is read and written directly (``reactor.py``, ``sock.sendto``), not through
asyncio's datagram transport: that transport receives into a 256 KiB buffer, which glibc
serves with mmap, mremap and munmap for every packet (measured: 23 us per packet against 7 us,
strace shows the three calls per datagram), and its Python layers cost more again on a path
that runs 50 times a second per call in each direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import random
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from .dtmf import DtmfDecoder, DtmfEvent
from .g711 import G711
from .jitter import AudioClock, ReorderBuffer
from .pacer import Pacer
from .reactor import SocketReactor
from .rtp import HEADER, HEADER_SIZE, RtpPacket, RtpParseError, RtpSender, parse_rtp
from .source import LEARN_PACKETS, RtpSourceGuard, Verdict
from .srtp import SrtpDropped, SrtpSession, is_rtcp

RATE = 8000
REORDER_MAX_DELAY_S = 0.06
COMFORT_NOISE_PT = 13  # RFC 3389; static payload type in RFC 3551
MAX_DATAGRAM = 2048  # G.711 at 60 ms is 492 bytes; anything larger is not RTP we negotiated
# Flood guard on the accepted source: packets beyond twice the ptime rate are dropped, after a
# burst of one second's worth (a network that held packets back releases them at once).
FLOOD_RATE_FACTOR = 2.0
FLOOD_BURST_S = 1.0


class FrameSource(Protocol):
    def next_frame(self) -> np.ndarray | None:
        """The next ptime of 8 kHz audio, or None to send silence."""
        ...


class NoPortAvailable(Exception):
    """Every RTP port in media.rtp_port_min..max is taken."""


@dataclass(slots=True)
class RtpStats:
    packets_in: int = 0
    packets_out: int = 0
    malformed: int = 0
    foreign_source: int = 0  # packets from anyone but the peer (strangers, a source learning)
    sources_learned: int = 0  # peers learned from their packets (NAT, late offer) not the SDP
    comfort_noise: int = 0
    other_payload: int = 0  # payload types we did not negotiate
    dtmf_events: int = 0
    flood_dropped: int = 0  # packets from the caller beyond twice the packet rate
    late_sends: int = 0  # packets sent more than one ptime after their deadline
    skipped_sends: int = 0  # packets not sent at all after a long stall (timestamps jump)
    send_errors: int = 0  # the kernel refused a packet (socket buffer full, no route)
    srtp_auth_failures: int = 0  # SRTP/SRTCP packets whose tag did not verify (forged, bad key)
    srtp_replayed: int = 0  # SRTP packets seen already, or older than the replay window
    rtcp_dropped: int = 0  # authentic SRTCP on the RTP port (rtcp-mux): we use no RTCP


class PortAllocator:
    """Hands out even RTP ports (the odd neighbour is RTCP's by convention), at random: the
    port of the next call cannot be guessed from the last one's."""

    def __init__(self, low: int, high: int) -> None:
        self._ports = list(range(low + (low % 2), high, 2)) or [low]
        self._in_use: set[int] = set()
        self._random = random.SystemRandom()

    def candidates(self) -> Iterator[int]:
        """Every free port once, in random order, drawn as they are asked for (a bind that
        works on the first try costs one draw, not a shuffle of the whole range)."""
        free = [p for p in self._ports if p not in self._in_use]
        for end in range(len(free), 0, -1):
            i = self._random.randrange(end)
            port = free[i]
            free[i] = free[end - 1]
            yield port

    def take(self, port: int) -> None:
        self._in_use.add(port)

    def release(self, port: int) -> None:
        self._in_use.discard(port)

    @property
    def in_use(self) -> int:
        return len(self._in_use)


class RtpStream:
    """One call's RTP: strict source checks on receive, paced G.711 on send."""

    def __init__(
        self,
        codec: G711,
        payload_type: int,
        remote: tuple[str, int] | None,
        on_payload: Callable[[bytes], None],
        ptime_ms: int = 20,
        dtmf_payload_type: int | None = None,
        *,
        strict: bool = True,
        learn_packets: int = LEARN_PACKETS,
        srtp: SrtpSession | None = None,
    ) -> None:
        self.codec = codec
        # SRTP (RTP/SAVP): every packet is unprotected before anything reads more than its
        # clear header, every packet we send protected last; None: plain RTP.
        self.srtp = srtp
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.ptime_ms = ptime_ms
        self.frame_samples = RATE * ptime_ms // 1000
        payload_types = [pt for pt in (payload_type, dtmf_payload_type) if pt is not None]
        self._guard = RtpSourceGuard(
            remote, payload_types, strict=strict, learn_packets=learn_packets
        )
        self._remote = self._guard.source  # where we send: the guard's source, kept at hand
        self.on_payload = on_payload
        self.on_peer_learned: Callable[[tuple[str, int]], None] = _ignore_peer_learned
        self.on_dtmf: Callable[[str, int], None] = _ignore_dtmf
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reactor: SocketReactor | None = None
        self._sender = RtpSender(payload_type, self.frame_samples)
        self._silence = bytes([codec.silence]) * self.frame_samples
        self.reorder = ReorderBuffer(REORDER_MAX_DELAY_S)
        self.audio_clock = AudioClock()
        self._fill = _silence_run(codec.silence, self.audio_clock.max_fill)
        self._audio_ssrc: int | None = None
        self.dtmf = DtmfDecoder()
        self._reorder_timer: asyncio.TimerHandle | None = None
        self._pacer: Pacer | None = None
        self._source: FrameSource | None = None
        self._talking = False
        self._last_rx = 0.0  # loop time of the caller's last packet (the RTP timeout)
        self._held = False  # the caller holds the call: we send nothing (RFC 3264 §8.4)
        packets_per_s = 1000 / ptime_ms
        self._flood_rate = FLOOD_RATE_FACTOR * packets_per_s
        self._flood_burst = self._flood_tokens = FLOOD_BURST_S * packets_per_s
        self._flood_at = 0.0
        self.on_flood: Callable[[], None] = _ignore_flood
        self.on_hold: Callable[[bool], None] = _ignore_hold  # True: held, False: resumed
        self.stats = RtpStats()
        self.port = 0

    # --- socket -------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        allocator: PortAllocator,
        bind_ip: str,
        factory: Callable[[], RtpStream],
    ) -> RtpStream:
        family = socket.AF_INET6 if ":" in bind_ip else socket.AF_INET
        for port in allocator.candidates():
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((bind_ip, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            stream = factory()
            stream.attach(sock)
            allocator.take(port)
            stream.port = port
            return stream
        raise NoPortAvailable(
            f"no free RTP port in the configured range ({allocator.in_use} in use)"
        )

    def attach(self, sock: socket.socket) -> None:
        """Take over a bound UDP socket: read it from the running loop, send on it."""
        sock.setblocking(False)
        # Expedited Forwarding, as phones and PBXs mark voice (RFC 3246).
        with contextlib.suppress(OSError):
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 0xB8)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xB8)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._reactor = SocketReactor.for_loop(self._loop)
        self._reactor.add(sock.fileno(), self._readable)

    def _readable(self) -> None:
        # One datagram per wake-up, as asyncio's transport reads: draining until EAGAIN would
        # cost a failing syscall and an exception per packet; epoll (level-triggered) calls
        # again while more are queued.
        now = self.poll_pacer()
        sock = self._sock
        if sock is None:
            return
        try:
            data, addr = sock.recvfrom(MAX_DATAGRAM)
        except OSError:
            # EAGAIN (someone read it first), or an ICMP error queued on the socket (port
            # unreachable while the caller's socket is not up yet): nothing to do.
            return
        self._received(data, addr, now)

    def poll_pacer(self) -> float:
        """Let a due pacer tick before this callback's work (see ``pacer.py``); returns the
        loop's time, which the callback's own work uses too."""
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time()
        pacer = self._pacer
        if pacer is not None and now >= pacer.due:
            pacer.poll(now)
            now = loop.time()  # the tick took its time (every call's packet)
        return now

    def close(self) -> None:
        if self._pacer is not None:
            self._pacer.leave(self)
        if self._reorder_timer is not None:
            self._reorder_timer.cancel()
            self._reorder_timer = None
        if self._sock is not None:
            assert self._reactor is not None
            self._reactor.remove(self._sock.fileno())
            self._sock.close()
            self._sock = None
        # Whoever listened (the call's bridge) is let go: no reference cycle keeps the call's
        # objects alive until the garbage collector's next full pass (a pause on the media
        # clock of every other call).
        self.on_payload = _ignore_payload
        self.on_dtmf = _ignore_dtmf
        self.on_flood = _ignore_flood
        self.on_hold = _ignore_hold
        self.on_peer_learned = _ignore_peer_learned
        self._source = None

    @property
    def remote(self) -> tuple[str, int] | None:
        return self._remote

    def summary(self) -> dict[str, int]:
        """Counters for the end-of-call log line."""
        counts = {**asdict(self.stats), **asdict(self.reorder.stats)}
        counts.pop("received")  # = packets_in
        counts["filled_ms"] = self.audio_clock.filled_samples // (RATE // 1000)
        return counts

    # --- receive ------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """One datagram from the socket (or from a test)."""
        self._received(data, addr, asyncio.get_running_loop().time())

    def _received(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        source = (addr[0], addr[1])
        srtp = self.srtp
        from_peer = source == self._remote
        if from_peer:
            if srtp is None:
                self._guard.heard_at = now
        else:
            if srtp is not None:
                # Only authentic packets may teach us a new source (a NAT's): the clear
                # header of a forged one would otherwise let a stranger take the media.
                clear = self._unprotect(srtp, data)
                if clear is None:
                    return
                data = clear
            if not self._from_elsewhere(data, source, now):
                return
        refill = (now - self._flood_at) * self._flood_rate
        tokens = min(self._flood_burst, self._flood_tokens + refill)
        self._flood_at = now
        if tokens < 1:
            self._flood_tokens = tokens
            if not self.stats.flood_dropped:
                self.on_flood()
            self.stats.flood_dropped += 1
            return
        self._flood_tokens = tokens - 1
        if from_peer and srtp is not None:
            # After the flood guard (it bounds the crypto work a flood costs), before anything
            # reads the packet; only an authentic packet keeps the source alive.
            clear = self._unprotect(srtp, data)
            if clear is None:
                return
            data = clear
            self._guard.heard_at = now
        self._last_rx = now
        # The packet of nearly every call, 50 times a second: a plain header (version 2, no
        # padding, extension or CSRC), our audio payload type, the next in sequence from the
        # current source. Straight to the audio path, without a parsed packet object or the
        # reorder buffer's general case (which it would pass through unchanged).
        if len(data) > HEADER_SIZE and data[0] == 0x80 and (data[1] & 0x7F) == self.payload_type:
            _, _, sequence, timestamp, ssrc = HEADER.unpack_from(data)
            if ssrc == self._audio_ssrc and self.reorder.take_in_order(sequence, ssrc):
                self.stats.packets_in += 1
                self._audio(data[HEADER_SIZE:], timestamp)
                return
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            self.stats.malformed += 1
            return
        self.stats.packets_in += 1
        reorder = self.reorder
        for ready in reorder.push(packet, now):
            self._dispatch(ready)
        if reorder.waiting:
            self._arm_reorder_timer()

    def _unprotect(self, srtp: SrtpSession, data: bytes) -> bytes | None:
        """The RTP inside an SRTP packet, or None: dropped and counted (a bad tag, a replay,
        junk, or SRTCP, which we do not use)."""
        try:
            if is_rtcp(data):
                srtp.unprotect_rtcp(data)
                self.stats.rtcp_dropped += 1
                return None
            return srtp.unprotect(data)
        except SrtpDropped as exc:
            if exc.kind == "replay":
                self.stats.srtp_replayed += 1
            elif exc.kind == "auth":
                self.stats.srtp_auth_failures += 1
            else:
                self.stats.malformed += 1
            return None

    def _from_elsewhere(self, data: bytes, source: tuple[str, int], now: float) -> bool:
        """A packet from an address we do not send to: the guard decides (``source.py``)."""
        header: tuple[int, int, int] | None
        if len(data) > HEADER_SIZE and data[0] == 0x80:  # a plain header: nothing else to check
            _, second, sequence, _, ssrc = HEADER.unpack_from(data)
            header = (second & 0x7F, sequence, ssrc)
        else:
            try:
                packet = parse_rtp(data)
            except RtpParseError:
                header = None  # junk never counts towards learning a source
            else:
                header = (packet.payload_type, packet.sequence, packet.ssrc)
        verdict = self._guard.check(source, header, now)
        if verdict is Verdict.DROP:
            self.stats.foreign_source += 1
            return False
        self._remote = self._guard.source
        if verdict is Verdict.LEARNED:
            self.stats.sources_learned += 1
            self.on_peer_learned(source)
        return True

    def _arm_reorder_timer(self) -> None:
        deadline = self.reorder.deadline
        timer = self._reorder_timer
        if deadline is None or self._sock is None:
            return
        if timer is not None:
            if timer.when() == deadline:
                return
            timer.cancel()
        self._reorder_timer = asyncio.get_running_loop().call_at(deadline, self._reorder_due)

    def _reorder_due(self) -> None:
        """A gap waited its 60 ms: what came after it goes out, the gap as silence."""
        self._reorder_timer = None
        for ready in self.reorder.poll(asyncio.get_running_loop().time()):
            self._dispatch(ready)
        self._arm_reorder_timer()

    def _dispatch(self, packet: RtpPacket) -> None:
        pt = packet.payload_type
        if pt == self.payload_type:
            if packet.ssrc != self._audio_ssrc:
                self._audio_ssrc = packet.ssrc
                self.audio_clock.reset()
            self._audio(bytes(packet.payload), packet.timestamp)
        elif pt == self.dtmf_payload_type:
            self._on_dtmf_events(self.dtmf.push(packet))
        elif pt == COMFORT_NOISE_PT:
            self.stats.comfort_noise += 1
        else:
            self.stats.other_payload += 1

    def _audio(self, payload: bytes, timestamp: int) -> None:
        """The caller's audio, in order: silence first where the timeline has a gap."""
        gap = self.audio_clock.gap(timestamp, len(payload))
        if gap:
            self.on_payload(self._fill[:gap])
        if self.dtmf.pending:
            self._on_dtmf_events(self.dtmf.audio(timestamp))
        self.on_payload(payload)

    def _on_dtmf_events(self, events: list[DtmfEvent]) -> None:
        for event in events:
            self.stats.dtmf_events += 1
            self.on_dtmf(event.digit, event.duration_ms)

    # --- send ---------------------------------------------------------------------------------

    async def pace(
        self, source: FrameSource, on_lateness: Callable[[float], None] | None = None
    ) -> None:
        """Send one packet per ptime, silence when ``source`` has nothing, until closed;
        ``on_lateness`` hears how late the shared pacer's ticks run (seconds)."""
        if self._sock is None:
            return
        self._source = source
        self._pacer = Pacer.for_ptime(self.ptime_ms)
        if on_lateness is not None:
            self._pacer.on_lateness = on_lateness
        await self._pacer.run(self)

    def tick(self, skipped: int, late: bool) -> None:
        """The shared pacer's call: this ptime's packet."""
        assert self._source is not None
        if skipped:
            # Packets lost to a stall: the timestamp moves on with the clock (RFC 3550 §5.1).
            self._sender.timestamp += skipped * self.frame_samples
            self.stats.skipped_sends += skipped
        self.stats.late_sends += late
        frame = self._source.next_frame()
        if frame is None:
            self._talking = False
            self.send(self._silence)
        else:
            # RFC 3551 §4.1: the marker bit on the first packet of a talk spurt.
            self.send(self.codec.encode(frame), not self._talking)
            self._talking = True

    def send(self, payload: bytes, marker: bool = False) -> None:
        if self._sock is None or self._remote is None or self._held:
            self._sender.build(payload, marker=marker)  # keep seq/timestamp running
            return
        packet = self._sender.build(payload, marker=marker)
        try:
            if self.srtp is not None:
                self._sock.sendto(self.srtp.protect(packet), self._remote)
            else:
                self._sock.sendto(packet, self._remote)
        except OSError:
            # Real-time audio is dropped, never queued: a packet sent late is worth nothing.
            self.stats.send_errors += 1
            return
        self.stats.packets_out += 1

    # --- signalling hooks (re-INVITE, late offer) -----------------------------------------------

    @property
    def flood_limit_pps(self) -> float:
        return self._flood_rate

    def set_sending(self, on: bool) -> None:
        """Hold (RFC 3264 §8.4): no RTP toward the caller; the clock keeps running, and the
        RTP timeout waits for the resume (the caller may send nothing while holding).
        ``on_hold`` hears each change (the call's hold timeout runs from it)."""
        if self._held and on:
            self._last_rx = asyncio.get_running_loop().time()
        changed = self._held == on
        self._held = not on
        if changed:
            self.on_hold(self._held)

    async def rtp_timeout(self, timeout_s: float) -> float:
        """Return once the caller has sent no RTP for ``timeout_s`` while not holding the call
        (Asterisk's rtptimeout); returns how long it has been silent."""
        loop = asyncio.get_running_loop()
        self._last_rx = max(self._last_rx, loop.time())  # counted from the answer at the latest
        while True:
            now = loop.time()
            if self._held:
                await asyncio.sleep(timeout_s)
                continue
            silent = now - self._last_rx
            if silent >= timeout_s:
                return silent
            await asyncio.sleep(timeout_s - silent)

    def set_remote(self, addr: tuple[str, int]) -> None:
        """The caller's media moved (new c=/m=): heard and sent to at once; an address other
        than this one must be learned again, under the same rules."""
        self._guard.moved(addr)
        self._remote = self._guard.source


@functools.cache
def _silence_run(byte: int, samples: int) -> bytes:
    """The longest gap fill, shared by every call: a slice of it fills any gap."""
    return bytes([byte]) * samples


def _ignore_payload(payload: bytes) -> None:
    """Audio after the stream was closed."""


def _ignore_dtmf(digit: str, duration_ms: int) -> None:
    """Key presses before anyone listens for them."""


def _ignore_flood() -> None:
    """A flood before anyone listens for it (it is counted in the stats all the same)."""


def _ignore_hold(held: bool) -> None:
    """A hold or resume before anyone listens for it."""


def _ignore_peer_learned(addr: tuple[str, int]) -> None:
    """A source learned before anyone listens (it is counted in the stats all the same)."""


def local_ip_towards(host: str) -> str:
    """The local address the kernel would use to reach `host` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
