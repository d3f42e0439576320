"""From the callee's 200 OK to the agent's first audio packet, on outbound calls (issue 17).

A real gateway process with the embedded agent (``realtime.url: embedded:echo``) and the
control API; the callee is a small Python UAS here on loopback: it answers each INVITE from
the gateway with 180 Ringing, then after ``--ring-ms`` with 200 OK (its SDP pointing at an
RTP socket of this process), and notes the monotonic time just before the 200 leaves. The
first RTP packet that is not silence is the agent speaking (the greeting asked for at the
answer, over a session opened while the phone rang): its arrival minus the 200's departure
is ``first_audio_ms``. Then the callee hangs up (BYE) and the next call is placed.

    .venv/bin/python tests/perf/bench_outbound.py [--calls 20] [--ring-ms 800] [--save NAME]

Target: p50 <= 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.gateway_proc import GatewayProcess
from tests.integration.peers import LOOPBACK, free_udp_port

TOKEN = "bench-outbound-token-0123456789"
SILENCE = 0xFF  # PCMU
TO, FROM = "+4917612345678", "+4930123456"


def _headers(message: str) -> tuple[str, dict[str, str]]:
    head = message.split("\r\n\r\n", 1)[0].split("\r\n")
    fields: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), value.strip())
    return head[0], fields


class Callee(asyncio.DatagramProtocol):
    """A phone behind the trunk: rings, answers, notes when its 200 left and when the agent's
    first audio arrived, hangs up."""

    def __init__(self, ring_s: float) -> None:
        self.ring_s = ring_s
        self.transport: asyncio.DatagramTransport | None = None
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((LOOPBACK, 0))
        self.rtp.setblocking(False)
        self.answered_at: float | None = None
        self.first_audio: asyncio.Future[float] | None = None
        self.bye_done: asyncio.Future[None] | None = None
        self._invite: tuple[dict[str, str], tuple[str, int]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode(errors="replace")
        start, fields = _headers(text)
        if start.startswith("INVITE"):
            self._invite = (fields, addr)
            self._reply(fields, addr, "180 Ringing")
            loop = asyncio.get_running_loop()
            loop.call_later(self.ring_s, self._answer, fields, addr)
        elif start.startswith("SIP/2.0 200") and self.bye_done is not None:
            if not self.bye_done.done():
                self.bye_done.set_result(None)

    def _reply(
        self, fields: dict[str, str], addr: tuple[str, int], status: str, sdp: str = ""
    ) -> None:
        assert self.transport is not None
        lines = [
            f"SIP/2.0 {status}",
            f"Via: {fields['via']}",
            f"From: {fields['from']}",
            f"To: {fields['to']};tag=callee1",
            f"Call-ID: {fields['call-id']}",
            f"CSeq: {fields['cseq']}",
            f"Contact: <sip:callee@{LOOPBACK}:{self.transport.get_extra_info('sockname')[1]}>",
        ]
        if sdp:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(sdp)}")
        self.transport.sendto(("\r\n".join(lines) + "\r\n\r\n" + sdp).encode(), addr)

    def _answer(self, fields: dict[str, str], addr: tuple[str, int]) -> None:
        port = self.rtp.getsockname()[1]
        sdp = (
            f"v=0\r\no=callee 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
        )
        loop = asyncio.get_running_loop()
        loop.add_reader(self.rtp.fileno(), self._rtp_readable)
        self.answered_at = time.monotonic()
        self._reply(fields, addr, "200 OK", sdp)

    def _rtp_readable(self) -> None:
        try:
            data = self.rtp.recv(2048)
        except BlockingIOError:
            return
        now = time.monotonic()
        payload = data[12:]
        if self.answered_at is not None and self.first_audio and not self.first_audio.done():
            if any(b not in (SILENCE, 0x7F) for b in payload):
                self.first_audio.set_result(now)

    def hang_up(self) -> None:
        """BYE in the gateway's dialog (we are its UAS: From is our To)."""
        assert self._invite is not None and self.transport is not None
        self.answered_at = None
        fields, addr = self._invite
        asyncio.get_running_loop().remove_reader(self.rtp.fileno())
        self.bye_done = asyncio.get_running_loop().create_future()
        me = self.transport.get_extra_info("sockname")[1]
        contact = fields.get("contact", "").strip("<>").split(">")[0]
        lines = [
            f"BYE {contact} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{me};branch=z9hG4bK{secrets.token_hex(6)}",
            f"From: {fields['to']};tag=callee1",
            f"To: {fields['from']}",
            f"Call-ID: {fields['call-id']}",
            "CSeq: 1 BYE",
            "Max-Forwards: 70",
            "Content-Length: 0",
        ]
        self.transport.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), addr)


async def one_call(api: str, callee: Callee) -> float:
    callee.bye_done = None
    callee.first_audio = asyncio.get_running_loop().create_future()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{api}/v1/calls",
            json={"to": TO, "from": FROM},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 202, await response.text()
    async with asyncio.timeout(20):
        first = await callee.first_audio
    assert callee.answered_at is not None
    ms = (first - callee.answered_at) * 1000
    callee.hang_up()
    assert callee.bye_done is not None
    async with asyncio.timeout(10):
        await callee.bye_done
    return ms


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _, callee = await loop.create_datagram_endpoint(
        lambda: Callee(args.ring_ms / 1000), local_addr=(LOOPBACK, 0)
    )
    trunk_port = callee.transport.get_extra_info("sockname")[1] if callee.transport else 0
    api_port = free_udp_port(also_tcp=True)
    config = {
        "realtime": {"url": "embedded:echo"},
        "logging": {"level": "info"},
        "service": {"drain_timeout_s": 0},
        "api": {"bind": LOOPBACK, "port": api_port, "token_env": "BENCH_API_TOKEN"},
        "sip": {
            "outbound": {
                "trunk": f"{LOOPBACK}:{trunk_port}",
                "caller_ids": [r"\+4930\d+"],
                "destinations": [r"\+49\d+"],
                "max_per_minute": 1000,
            }
        },
    }
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"BENCH_API_TOKEN": TOKEN}
        gateway = await GatewayProcess(Path(tmp), config, env=env).start()
        try:
            for _ in range(args.calls):
                samples.append(await one_call(f"http://{LOOPBACK}:{api_port}", callee))
                await gateway.wait_for("call.ended", timeout=10, where=lambda e: True)
                gateway.events.clear()
        finally:
            await gateway.stop()
            if callee.transport is not None:
                callee.transport.close()
            callee.rtp.close()
    ordered = sorted(samples)
    return {
        "benchmark": "outbound_first_audio",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "calls": args.calls,
        "ring_ms": args.ring_ms,
        "first_audio_ms": {
            "p50": round(statistics.median(ordered), 1),
            "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
            "min": round(ordered[0], 1),
            "max": round(ordered[-1], 1),
            "all": [round(s, 1) for s in samples],
        },
        "target_p50_ms": 300,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--ring-ms", type=int, default=800, help="ringing before the 200 OK")
    parser.add_argument("--save", metavar="NAME", help="also write tests/perf/reports/NAME.json")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        out = Path(__file__).parent / "reports" / f"{args.save}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
