"""A flood of INVITEs from a source outside ``sip.allow_from``, beside a call in progress.

Shared by the test (a short flood, the disturbance bound) and ``tests/perf/bench_flood.py``
(the issue's 1,000 INVITEs per second for 10 s, the media target). The stranger is 127.0.0.2;
the call is a SIPp caller whose media is timed by a ``PacingProbe`` at 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .gateway_proc import GatewayProcess
from .pacing import PacingProbe, PacingReport
from .peers import LOOPBACK
from .scenarios import sipp_dial

STRANGER = "127.0.0.2"
BATCH_S = 0.01  # INVITEs go out in batches every 10 ms, on an absolute schedule


@dataclass
class FloodReport:
    invites: int
    seconds: float
    bytes_sent: int
    bytes_received: int  # what the gateway sent back to the stranger
    answers: int
    rss_growth_mib: float
    files_of_the_stranger: int
    pacing: PacingReport

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pacing": asdict(self.pacing)}


def _invite(i: int, port: int) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"INVITE sip:echo@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {STRANGER}:{port};branch=z9hG4bK-flood{i};rport\r\n"
        f"From: <sip:{i}@{STRANGER}>;tag=f{i}\r\nTo: <sip:echo@127.0.0.1>\r\n"
        f"Call-ID: flood-{i}@{STRANGER}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:{i}@{STRANGER}:{port}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _stranger_files(directories: list[Path]) -> int:
    count = 0
    for directory in directories:
        for path in directory.glob("*") if directory.exists() else []:
            if STRANGER in path.read_text(errors="replace"):
                count += 1
    return count


async def flood(
    tmp_path: Path, gateway: GatewayProcess, rate: int, seconds: float, records: list[Path]
) -> FloodReport:
    """Flood `gateway` while a call is up; the call's pacing is timed over the flood."""
    loop = asyncio.get_running_loop()
    async with PacingProbe() as probe:
        async with sipp_dial(tmp_path / "bystander", gateway.port, probe.port):
            await gateway.wait_for(
                "call.answered",
                timeout=20,
                where=lambda e: e["rtp_remote"].endswith(f":{probe.port}"),
            )
            await probe.wait_packets(25, timeout=10)
            rss_before = rss_mib(gateway.pid)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((STRANGER, 0))
            sock.setblocking(False)
            port = sock.getsockname()[1]
            sent = received = answers = invites = 0

            def drain() -> None:
                nonlocal received, answers
                while True:
                    try:
                        data = sock.recv(65535)
                    except BlockingIOError:
                        return
                    received += len(data)
                    answers += 1

            try:
                probe.start_window()
                start = loop.time()
                per_batch = max(1, round(rate * BATCH_S))
                batches = round(seconds / BATCH_S)
                for batch in range(batches):
                    for _ in range(per_batch):
                        data = _invite(invites, port)
                        sock.sendto(data, (LOOPBACK, gateway.port))
                        sent += len(data)
                        invites += 1
                    drain()
                    await asyncio.sleep(max(0.0, start + (batch + 1) * BATCH_S - loop.time()))
                elapsed = loop.time() - start
                # The answers to the last batch: the gateway handles one datagram in ~0.1 ms.
                drain()
                deadline = loop.time() + 2
                while answers < invites:
                    try:
                        async with asyncio.timeout_at(deadline):
                            data = await loop.sock_recv(sock, 65535)
                    except TimeoutError:
                        break
                    received += len(data)
                    answers += 1
                rss_after = rss_mib(gateway.pid)
                pacing = probe.window()
            finally:
                sock.close()
    return FloodReport(
        invites=invites,
        seconds=round(elapsed, 2),
        bytes_sent=sent,
        bytes_received=received,
        answers=answers,
        rss_growth_mib=round(rss_after - rss_before, 2),
        files_of_the_stranger=_stranger_files(records),
        pacing=pacing,
    )


def dumps(report: FloodReport) -> str:
    return json.dumps(report.as_dict(), indent=1)
