"""Ten minutes of a call's outbound RTP in a few seconds: the real pacer on a simulated clock.

The gateway's own ``RtpStream`` and shared ``Pacer`` run on an asyncio loop whose clock is
virtual: when the loop would sleep, the clock jumps to the next timer instead, plus a random
wake-up delay (typical jitter, hiccups, rare long stalls).  The packets go through a real
loopback socket to a receiver on the same loop, which counts them and checks sequence numbers
and timestamps.  Prints a JSON report: packets in ten minutes (30,000 expected at 20 ms).

    .venv/bin/python tests/perf/bench_pacer.py [--minutes 10] [--ptime 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import selectors
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.media.g711 import PCMU
from gateway.media.rtp import parse_rtp
from gateway.media.stream import PortAllocator, RtpStream
from tests.integration.peers import LOOPBACK, free_port_block


class VirtualSelector(selectors.DefaultSelector):
    """Never blocks: a wait of ``timeout`` becomes a jump of the loop's virtual clock."""

    def __init__(self, wake_late) -> None:
        super().__init__()
        self.now = 0.0
        self.wake_late = wake_late

    def select(self, timeout: float | None = None):  # type: ignore[override]
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self.now += timeout + self.wake_late()
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, wake_late) -> None:
        self.virtual = VirtualSelector(wake_late)
        super().__init__(self.virtual)

    def time(self) -> float:
        return self.virtual.now


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets = 0
        self.seq_errors = 0
        self.ts_jumps = 0
        self.last: tuple[int, int] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        p = parse_rtp(data)
        if self.last is not None:
            seq, ts = self.last
            self.seq_errors += p.sequence != (seq + 1) & 0xFFFF
            self.ts_jumps += p.timestamp != (ts + len(p.payload)) & 0xFFFFFFFF
        self.last = (p.sequence, p.timestamp)
        self.packets += 1


async def run(seconds: float, ptime_ms: int) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    _, receiver = await loop.create_datagram_endpoint(Receiver, sock=sock)
    base = free_port_block(4)
    stream = await RtpStream.open(
        PortAllocator(base, base + 3),
        LOOPBACK,
        lambda: RtpStream(PCMU, 0, sock.getsockname(), lambda _: None, ptime_ms),
    )

    class Silence:
        def next_frame(self) -> None:
            return None

    pacer = asyncio.create_task(stream.pace(Silence()))
    start = loop.time()
    await asyncio.sleep(seconds)
    end = loop.time()
    stream.close()
    await pacer
    await asyncio.sleep(0.1)  # virtual: lets the last datagrams be read
    return {
        "virtual_seconds": round(end - start, 3),
        "packets_expected": round(seconds * 1000 / ptime_ms),
        "packets_received": receiver.packets,
        "sequence_errors": receiver.seq_errors,
        "timestamp_jumps": receiver.ts_jumps,
        "late_sends": stream.stats.late_sends,
        "skipped_sends": stream.stats.skipped_sends,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--ptime", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    def wake_late() -> float:
        # 95 %: up to 2 ms; 4.9 %: a 5-15 ms hiccup; 0.1 %: a 100 ms stall.
        r = rng.random()
        if r < 0.95:
            return rng.uniform(0, 0.002)
        return rng.uniform(0.005, 0.015) if r < 0.999 else 0.1

    loop = VirtualLoop(wake_late)
    try:
        result = loop.run_until_complete(run(args.minutes * 60, args.ptime))
    finally:
        loop.close()
    print(json.dumps({"benchmark": "pacer_drift", "ptime_ms": args.ptime, **result}, indent=2))


if __name__ == "__main__":
    main()
