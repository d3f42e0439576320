"""A caller whose only job is to time the gateway's packets: the bystander of fault tests.

One loopback UDP socket plays a phone: it sends G.711 every 20 ms on an absolute schedule
(so the call is alive, and the gateway's RTP timeout does not fire) and stamps every packet
the gateway sends with the kernel's receive time (SO_TIMESTAMPNS). The gaps between those
stamps are the gateway's pacing, not this test process's scheduling, which shares the
machine with the fault being injected.

    async with PacingProbe() as probe:
        ... SIPp offers probe.port in its SDP ...
        probe.start_window()
        ... the fault ...
        report = probe.window()   # gaps p50/p99/max in ms, lost packets
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from dataclasses import dataclass

import numpy as np

from gateway.media.g711 import PCMU

from .peers import LOOPBACK

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_HEADER = struct.Struct("!BBHII")
FRAME = 160
PTIME_S = 0.02
# The media target (issue 4): outbound inter-packet gap p99 <= 22 ms and max <= 30 ms. It is
# measured by the benchmarks (tests/perf/bench_load.py); a test on a shared CI machine asserts
# the disturbance bound below instead, and prints whether the target held.
GAP_P99_MS = 22.0
GAP_MAX_MS = 30.0
# A fault that reaches another call (a blocked loop, a starved pacer) shows as lost packets or
# gaps of several packet times; scheduling noise on a loaded 2-core machine stays well below.
DISTURBED_GAP_MS = 60.0


@dataclass
class PacingReport:
    packets: int
    lost: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def undisturbed(self) -> bool:
        return self.packets > 0 and self.lost == 0 and self.max_ms <= DISTURBED_GAP_MS

    def within_target(self) -> bool:
        return (
            self.packets > 0
            and self.lost == 0
            and self.p99_ms <= GAP_P99_MS
            and self.max_ms <= GAP_MAX_MS
        )


class PacingProbe:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.stamps: list[tuple[int, int]] = []  # (kernel receive time ns, RTP sequence)
        self._window_from = 0
        self._remote: tuple[str, int] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._cmsg = socket.CMSG_SPACE(_TIMESPEC.size)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._read)

    async def __aenter__(self) -> PacingProbe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _read(self) -> None:
        while True:
            try:
                data, ancdata, _, addr = self.sock.recvmsg(2048, self._cmsg)
            except BlockingIOError:
                break
            if len(data) < 12:
                continue
            stamp = 0
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    stamp = sec * 1_000_000_000 + nsec
            self.stamps.append((stamp, _HEADER.unpack_from(data)[2]))
            if self._remote is None:  # symmetric RTP: answer where the gateway sends from
                self._remote = addr
                self._sender = self._loop.create_task(self._send_loop())
        self._arrived.set()

    async def _send_loop(self) -> None:
        """A caller speaking softly, one packet per 20 ms on an absolute schedule."""
        t = np.arange(FRAME * 50) / 8000
        voice = PCMU.encode((800 * np.sin(2 * np.pi * 200 * t)).astype(np.int16))
        start = self._loop.time()
        seq = ts = 0
        while True:
            payload = voice[(seq % 50) * FRAME : (seq % 50 + 1) * FRAME]
            header = _HEADER.pack(0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, 0xB7574DE5)
            if self._remote is not None:
                self.sock.sendto(header + payload, self._remote)
            seq += 1
            ts += FRAME
            await asyncio.sleep(max(0.0, start + seq * PTIME_S - self._loop.time()))

    async def wait_packets(self, n: int, timeout: float) -> None:
        """Until `n` packets have arrived in all (a wait on packets, never a sleep)."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.stamps) < n:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"pacing probe: {len(self.stamps)} of {n} packets") from None

    def start_window(self) -> None:
        self._window_from = len(self.stamps)

    async def window_of(self, packets: int, timeout: float = 10) -> None:
        """Until the window holds at least `packets` packets."""
        await self.wait_packets(self._window_from + packets, timeout)

    def window(self) -> PacingReport:
        """Pacing since `start_window`: the gaps between consecutive packets."""
        seen = self.stamps[self._window_from :]
        gaps: list[float] = []
        lost = 0
        for (t0, s0), (t1, s1) in itertools.pairwise(seen):
            step = (s1 - s0) & 0xFFFF
            lost += max(0, step - 1)
            gaps.append((t1 - t0) / 1e6)
        if not gaps:
            return PacingReport(len(seen), lost, 0.0, 0.0, 0.0)
        g = np.array(gaps)
        return PacingReport(
            len(seen),
            lost,
            round(float(np.percentile(g, 50)), 2),
            round(float(np.percentile(g, 99)), 2),
            round(float(g.max()), 2),
        )
