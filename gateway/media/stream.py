"""The call leg's RTP socket: the receive rules' shell, and a pacer on an absolute clock.

Receive: each datagram goes to ``RtpReceiver`` (``receiver.py``, sans-I/O: strict source,
flood bucket, SRTP, reorder, audio clock, DTMF, stats), and the stream does what it answers:
the caller's audio to ``on_payload``, key presses to ``on_dtmf``, a learned source becomes
where we send, a reorder wait arms a timer.

The call's opened codec (``codecs.py``) sets the sizes: ``frame_samples`` is one ptime of its
PCM (160 for G.711, 320 for G.722, 480 for Opus at 20 ms), ``frame_ticks`` one ptime of its
RTP clock (160, 160, 960).

Send: one packet per ptime for the whole call, silence when there is nothing to play: a PBX
hangs up on an RTP timeout, and a steady clock is what makes the caller hear the model without
gaps or drift.

The socket is read and written directly (``reactor.py``; sends: ``rtp_out.py``), not through
asyncio's datagram transport: that transport receives into a 256 KiB buffer, which glibc
serves with mmap, mremap and munmap for every packet (measured: 23 us per packet against 7 us,
strace shows the three calls per datagram), and its Python layers cost more again on a path
that runs 50 times a second per call in each direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np

from .codecs import Codec
from .dtmf import DtmfEvent
from .key_sender import KeySender
from .pacer import Pacer
from .reactor import SocketReactor
from .receiver import Lost, Output, RtpReceiver, RtpStats, Signal, SourceChanged
from .rtp_out import RtpOut
from .source import LEARN_PACKETS
from .srtp import SrtpSession

__all__ = ["FrameSource", "NoPortAvailable", "PortAllocator", "RtpStats", "RtpStream"]

MAX_DATAGRAM = 2048  # G.711 at 60 ms is 492 bytes; anything larger is not RTP we negotiated


class FrameSource(Protocol):
    def next_frame(self) -> np.ndarray | None:
        """The next ptime of audio at the codec's rate, or None to send silence."""
        ...


class NoPortAvailable(Exception):
    """Every RTP port in media.rtp_port_min..max is taken."""


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
    """One call's RTP: the receiver's rules on what arrives, paced audio on send."""

    def __init__(
        self,
        codec: Codec,
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
        self.payload_type, self.dtmf_payload_type = payload_type, dtmf_payload_type
        self.ptime_ms = ptime_ms
        self.frame_samples = codec.rate * ptime_ms // 1000  # PCM samples a packet
        self.frame_ticks = codec.clock_rate * ptime_ms // 1000  # RTP clock ticks a packet
        self.receiver = RtpReceiver(
            payload_type,
            remote,
            ptime_ms=ptime_ms,
            dtmf_payload_type=dtmf_payload_type,
            strict=strict,
            learn_packets=learn_packets,
            srtp=srtp,
            codec=codec,
        )
        self.stats: RtpStats = self.receiver.stats  # one set of counters, both directions
        # The sending side (``rtp_out.py``): to the receiver's source, SRTP-protected last.
        self._out = RtpOut(codec, payload_type, self.frame_ticks, self.stats)
        self._out.srtp = srtp
        self._out.to(self.receiver.remote)
        self.reorder, self.audio_clock = self.receiver.reorder, self.receiver.audio_clock
        self.dtmf = self.receiver.dtmf
        self.on_payload = on_payload
        self.on_peer_learned: Callable[[tuple[str, int]], None] = _ignore_peer_learned
        self.on_dtmf: Callable[[str, int], None] = _ignore_dtmf
        self.on_flood: Callable[[], None] = _ignore_flood
        self.on_hold: Callable[[bool], None] = _ignore_hold  # True: held, False: resumed
        self.on_lost: Callable[[int], None] = _ignore_lost  # ticks to conceal (G.722, Opus)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reactor: SocketReactor | None = None
        self._silence, self._zeros = _silence(codec, self.frame_samples)
        self._reorder_timer: asyncio.TimerHandle | None = None
        self._pacer: Pacer | None = None
        self._source: FrameSource | None = None
        self._talking = False
        self.keys = KeySender(self.frame_ticks, clock_rate=codec.clock_rate)  # control API
        self.port = 0

    @property
    def srtp(self) -> SrtpSession | None:
        return self._out.srtp

    @srtp.setter
    def srtp(self, session: SrtpSession | None) -> None:
        """A re-INVITE may re-key: both directions take the new session."""
        self._out.srtp = self.receiver.srtp = session

    # --- socket -------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        allocator: PortAllocator,
        bind_ip: str,
        factory: Callable[[], RtpStream],
    ) -> RtpStream:
        sock, port = bind_rtp_socket(allocator, bind_ip)
        stream = factory()
        stream.attach(sock)
        stream.port = port
        return stream

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
        self._out.attach(sock)
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
            self._out.detach()
            self._sock.close()
            self._sock = None
        # Whoever listened (the call's bridge) is let go: no reference cycle keeps the call's
        # objects alive until the garbage collector's next full pass (a pause on the media
        # clock of every other call).
        self.on_payload, self.on_dtmf, self.on_flood = _ignore_payload, _ignore_dtmf, _ignore_flood
        self.on_hold, self.on_lost = _ignore_hold, _ignore_lost
        self.on_peer_learned = _ignore_peer_learned
        self._source = None
        self.receiver.release()

    @property
    def remote(self) -> tuple[str, int] | None:
        return self._out.remote

    def summary(self) -> dict[str, int]:
        """Counters for the end-of-call log line."""
        return {**self.receiver.summary(), **self.codec.counters()}

    # --- receive ------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """One datagram from the socket (or from a test)."""
        self._received(data, addr, asyncio.get_running_loop().time())

    def _received(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        out = self.receiver.receive(data, addr, now)
        if len(out) == 1 and (item := out[0]).__class__ is bytes:
            self.on_payload(item)  # the packet of nearly every call: its audio, nothing else
        else:
            self._act(out)

    def _act(self, out: Sequence[Output]) -> None:
        """Do what the receiver answered, in its order (a ``Drop`` is counted already)."""
        for item in out:
            kind = item.__class__
            if kind is bytes:
                self.on_payload(item)  # type: ignore[arg-type]
            elif kind is Lost:
                self.on_lost(item.ticks)  # type: ignore[union-attr]
            elif kind is DtmfEvent:
                self.on_dtmf(item.digit, item.duration_ms)  # type: ignore[union-attr]
            elif kind is SourceChanged:
                self._source_changed(item)  # type: ignore[arg-type]
            elif item is Signal.REORDER_WAIT:
                self._arm_reorder_timer()
            elif item is Signal.FLOOD_STARTED:
                self.on_flood()

    def _source_changed(self, change: SourceChanged) -> None:
        self._out.to(change.addr)
        if change.learned:
            self.on_peer_learned(change.addr)

    def _arm_reorder_timer(self) -> None:
        deadline = self.receiver.deadline
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
        self._act(self.receiver.poll(asyncio.get_running_loop().time()))

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

    def switch_source(self, source: FrameSource) -> FrameSource | None:
        """Where the pacer takes its frames from now on (music on hold, the other leg of a
        bridged transfer); the source it had."""
        previous, self._source = self._source, source
        return previous

    def tick(self, skipped: int, late: bool) -> None:
        """The shared pacer's call: this ptime's packet."""
        assert self._source is not None
        out = self._out
        if skipped:
            out.skip(skipped)
            self.stats.skipped_sends += skipped
        self.stats.late_sends += late
        if self.keys.busy and (event := self.keys.next_packet(out.sender.timestamp)):
            payload, marker, timestamp = event  # a key in place of audio, which waits
            out.event(payload, marker, timestamp, self.dtmf_payload_type or 0)
            return
        frame = self._source.next_frame()
        if frame is None:
            self._talking = False
            out.payload(self._silence or self.codec.encode(self._zeros))
            return
        # RFC 3551 §4.1: the marker bit on the first packet of a talk spurt.
        out.frame(frame, not self._talking)
        self._talking = True

    def send_keys(self, keys: str) -> None:
        """Keys (0-9 * # A-D) to the caller as RFC 4733 events; ValueError without one."""
        if self.dtmf_payload_type is None:
            raise ValueError("the caller's side did not offer telephone-event (RFC 4733)")
        self.keys.queue(keys)

    def send(self, payload: bytes, marker: bool = False) -> None:
        """One ptime of coded audio outside the pacer's clock (tests drive the sending side)."""
        self._out.payload(payload, marker)

    # --- signalling hooks (re-INVITE, late offer) -----------------------------------------------

    @property
    def flood_limit_pps(self) -> float:
        return self.receiver.flood_rate

    def set_sending(self, on: bool) -> None:
        """Hold (RFC 3264 §8.4): no RTP toward the caller; the clock keeps running, and the
        receiver's RTP timeout count waits for the resume (a holding caller may send nothing).
        ``on_hold`` hears each change (the call's hold timeout runs from it)."""
        changed = self.receiver.hold(not on, (self._loop or asyncio.get_running_loop()).time())
        self._out.held = self.receiver.held
        if changed:
            self.on_hold(self._out.held)

    def set_remote(self, addr: tuple[str, int]) -> None:
        """The caller's media moved (new c=/m=): heard and sent to at once; an address other
        than this one must be learned again, under the same rules."""
        self.receiver.moved(addr)
        self._out.to(self.receiver.remote)


def bind_rtp_socket(allocator: PortAllocator, bind_ip: str) -> tuple[socket.socket, int]:
    """A UDP socket bound to a free port of the range, taken from the allocator (an
    outbound call offers it before it knows the codec; `RtpStream.attach` takes it later)."""
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
        allocator.take(port)
        return sock, port
    raise NoPortAvailable(f"no free RTP port in the configured range ({allocator.in_use} in use)")


def _ignore_payload(payload: bytes) -> None:
    """Audio after the stream was closed."""


def _silence(codec: Codec, frame_samples: int) -> tuple[bytes, np.ndarray]:
    """G.711's silence is one constant payload (else b""); a stateful coder (G.722, Opus)
    encodes the zero frame each time instead, so its state stays the far end's."""
    silence = codec.silence
    payload = b"" if silence is None else bytes([silence]) * frame_samples
    return payload, np.zeros(frame_samples, dtype=np.int16)


def _ignore_lost(ticks: int) -> None:
    """Lost audio after the stream was closed, or before anyone conceals it."""


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
