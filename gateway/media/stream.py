"""The call leg's RTP socket: receive, latch, and a pacer on an absolute clock.

The pacer sends one packet per ptime for the whole call, silence when there is
nothing to play: a PBX hangs up on an RTP timeout, and a steady clock is what
makes the caller hear the model without gaps or drift.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .g711 import G711
from .rtp import RtpParseError, RtpSender, parse_rtp

RATE = 8000
MAX_CATCH_UP_S = 0.2  # a loop stalled longer than this skips ahead instead of bursting


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
    foreign_source: int = 0  # packets from an address other than the latched one
    other_payload: int = 0
    late_ticks: int = 0  # pacer ticks that fired more than one ptime late
    skipped_ticks: int = 0


class PortAllocator:
    """Hands out even RTP ports (the odd neighbour is RTCP's by convention)."""

    def __init__(self, low: int, high: int) -> None:
        self._ports = list(range(low + (low % 2), high, 2)) or [low]
        self._next = 0
        self._in_use: set[int] = set()

    def candidates(self) -> list[int]:
        n = len(self._ports)
        order = [self._ports[(self._next + i) % n] for i in range(n)]
        return [p for p in order if p not in self._in_use]

    def take(self, port: int) -> None:
        self._in_use.add(port)
        self._next = (self._ports.index(port) + 1) % len(self._ports)

    def release(self, port: int) -> None:
        self._in_use.discard(port)

    @property
    def in_use(self) -> int:
        return len(self._in_use)


class RtpStream(asyncio.DatagramProtocol):
    """One call's RTP: symmetric latching on receive, paced G.711 on send."""

    def __init__(
        self,
        codec: G711,
        payload_type: int,
        remote: tuple[str, int] | None,
        on_payload: Callable[[bytes], None],
        ptime_ms: int = 20,
    ) -> None:
        self.codec = codec
        self.payload_type = payload_type
        self.ptime_ms = ptime_ms
        self.frame_samples = RATE * ptime_ms // 1000
        self._remote = remote
        self._latched = False
        self.on_payload = on_payload
        self._transport: asyncio.DatagramTransport | None = None
        self._sender = RtpSender(payload_type, self.frame_samples)
        self._silence = bytes([codec.silence]) * self.frame_samples
        self.stats = RtpStats()
        self.port = 0
        self.closed = asyncio.Event()

    # --- socket -------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        allocator: PortAllocator,
        bind_ip: str,
        factory: Callable[[], RtpStream],
    ) -> RtpStream:
        loop = asyncio.get_running_loop()
        for port in allocator.candidates():
            try:
                _, stream = await loop.create_datagram_endpoint(
                    factory, local_addr=(bind_ip, port)
                )
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            allocator.take(port)
            stream.port = port
            return stream
        raise NoPortAvailable(
            f"no free RTP port in the configured range ({allocator.in_use} in use)"
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython 3.11's selector transport is not a DatagramTransport subclass: no isinstance.
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Expedited Forwarding, as phones and PBXs mark voice (RFC 3246).
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xB8)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def remote(self) -> tuple[str, int] | None:
        return self._remote

    # --- receive ------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        source = (addr[0], addr[1])
        if not self._latched:
            # Symmetric RTP: answer where the caller's packets really come from (NAT).
            self._remote = source
            self._latched = True
        elif source != self._remote:
            self.stats.foreign_source += 1
            return
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            self.stats.malformed += 1
            return
        self.stats.packets_in += 1
        if packet.payload_type != self.payload_type:
            self.stats.other_payload += 1
            return
        self.on_payload(bytes(packet.payload))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the caller's socket is not up yet: not fatal.
        pass

    # --- send ---------------------------------------------------------------------------------

    async def pace(self, source: FrameSource) -> None:
        """Send one packet per ptime on an absolute monotonic schedule, until cancelled."""
        loop = asyncio.get_running_loop()
        period = self.ptime_ms / 1000
        start = loop.time()
        tick = 0
        talking = False
        while self._transport is not None:
            tick += 1
            deadline = start + tick * period
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -period:
                self.stats.late_ticks += 1
                if delay < -MAX_CATCH_UP_S:
                    # The loop stalled: skip the lost ticks, keep timestamps true to the clock.
                    skipped = int(-delay / period)
                    tick += skipped
                    self.stats.skipped_ticks += skipped
                    self._sender.timestamp = (
                        self._sender.timestamp + skipped * self.frame_samples
                    ) & 0xFFFFFFFF
            frame = source.next_frame()
            if frame is None:
                payload = self._silence
                marker = False
                talking = False
            else:
                payload = self.codec.encode(frame)
                marker = not talking  # RFC 3551 §4.1: marker on the first packet of a talk spurt
                talking = True
            self.send(payload, marker)

    def send(self, payload: bytes, marker: bool = False) -> None:
        if self._transport is None or self._remote is None or self._held:
            self._sender.build(payload, marker=marker)  # keep seq/timestamp running
            return
        self._transport.sendto(self._sender.build(payload, marker=marker), self._remote)
        self.stats.packets_out += 1

    # --- signalling hooks (re-INVITE, late offer) -----------------------------------------------

    _held = False

    def set_sending(self, on: bool) -> None:
        """Hold (RFC 3264 §8.4): no RTP toward the caller; the clock keeps running."""
        self._held = not on

    def set_remote(self, addr: tuple[str, int]) -> None:
        """The caller's media moved (new c=/m=): send there, and latch again on what arrives."""
        self._remote = addr
        self._latched = False


def local_ip_towards(host: str) -> str:
    """The local address the kernel would use to reach `host` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"

