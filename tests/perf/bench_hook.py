"""What the decision webhook adds to call setup (issue 16): INVITE -> 200 OK with and without
a local hook, p50/p99. Prints a JSON report.

Two gateways run side by side in this process (the embedded echo agent as the Realtime side),
one with ``hooks.call_incoming`` pointing at an aiohttp hook on loopback that accepts with a
profile, variables and metadata (signed: the Standard Webhooks HMAC is computed on every ask).
Calls alternate between them (ABAB, so drift in the machine's load hits both alike); each call
is a real INVITE over UDP from a socket of this script's, its 200 ACKed and then hung up. The
hook runs on the same event loop as the gateways: its own handling is counted in the figure,
which makes the added time an upper bound for a hook on another host's fast path.

    .venv/bin/python tests/perf/bench_hook.py [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.app import Gateway
from gateway.config import parse_config
from tests.integration.peers import free_port_block, free_udp_port

HOST = "127.0.0.1"
SECRET_ENV = "BENCH_HOOK_SECRET"
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\n"
)
ANSWER = {
    "action": "accept",
    "profile": "sales",
    "instructions": "You help ${first_name}, a ${tier} customer.",
    "variables": {"first_name": "Ada", "tier": "gold"},
    "metadata": {"crm_id": "A-17"},
}


class Caller(asyncio.DatagramProtocol):
    """A UDP socket that sends requests and hands each response to whoever waits."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.responses.put_nowait(data)

    async def final(self, timeout: float = 10) -> bytes:
        async with asyncio.timeout(timeout):
            while True:
                data = await self.responses.get()
                if int(data.split(b" ", 2)[1]) >= 200:
                    return data


def request(method: str, name: str, port: int, cseq: int, to_tag: str = "") -> bytes:
    to = "<sip:echo@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    body = SDP if method == "INVITE" else ""
    lines = [
        f"{method} sip:echo@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP {HOST}:{port};branch=z9hG4bK-{name}-{method.lower()}",
        f"From: <sip:bench@{HOST}>;tag={name}",
        f"To: {to}",
        f"Call-ID: {name}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        f"Contact: <sip:bench@{HOST}:{port}>",
        "X-Crm-Id: 42",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def tag_of(answer: bytes) -> str:
    to = next(x for x in answer.split(b"\r\n") if x.lower().startswith(b"to:"))
    return to.split(b";tag=", 1)[1].split(b";")[0].decode()


async def one_call(caller: Caller, local_port: int, gateway_port: int, name: str) -> float:
    """INVITE -> 200 OK in seconds; then ACK, BYE and its 200."""
    assert caller.transport is not None
    started = time.perf_counter()
    caller.transport.sendto(request("INVITE", name, local_port, 1), (HOST, gateway_port))
    ok = await caller.final()
    setup = time.perf_counter() - started
    status = int(ok.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"{name}: {status}")
    tag = tag_of(ok)
    caller.transport.sendto(request("ACK", name, local_port, 1, tag), (HOST, gateway_port))
    caller.transport.sendto(request("BYE", name, local_port, 2, tag), (HOST, gateway_port))
    await caller.final()
    return setup


async def ended(gateway: Gateway) -> None:
    """Until the gateway has no call left (its teardown is over before the next call)."""
    changed = asyncio.Event()
    gateway.on_calls_changed = changed.set
    async with asyncio.timeout(10):
        while gateway.calls:
            changed.clear()
            await changed.wait()


def config(hook_url: str | None) -> dict[str, Any]:
    port_base = free_port_block(40)
    cfg: dict[str, Any] = {
        "sip": {"bind": HOST, "port": free_udp_port(), "allow_from": ["127.0.0.0/8"]},
        "media": {"rtp_port_min": port_base, "rtp_port_max": port_base + 39},
        "metrics": {"enabled": False},
        "logging": {"level": "warning"},
        "profiles": {"sales": {"instructions": "Sales desk."}},
    }
    if hook_url is not None:
        cfg["hooks"] = {"call_incoming": {"url": hook_url, "secret_env": SECRET_ENV}}
    return cfg


async def hook_server() -> tuple[web.AppRunner, str]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_post("/hook", answer)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{HOST}:{port}/hook"


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2), "max_ms": round(ms[-1], 2)}


async def main(calls: int) -> dict[str, Any]:
    os.environ[SECRET_ENV] = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    runner, url = await hook_server()
    plain = Gateway(parse_config(config(None)))
    hooked = Gateway(parse_config(config(url)))
    await plain.start()
    await hooked.start()
    loop = asyncio.get_running_loop()
    transport, caller = await loop.create_datagram_endpoint(Caller, local_addr=(HOST, 0))
    local_port = transport.get_extra_info("sockname")[1]
    times: dict[str, list[float]] = {"without_hook": [], "with_hook": []}
    try:
        for i in range(calls + 10):  # the first 10 of each warm up (connections, caches)
            for label, gw in (("without_hook", plain), ("with_hook", hooked)):
                took = await one_call(caller, local_port, gw.sip_port, f"{label}-{i}")
                if i >= 10:
                    times[label].append(took)
                await ended(gw)
    finally:
        transport.close()
        await plain.stop()
        await hooked.stop()
        await runner.cleanup()
    without, with_hook = summary(times["without_hook"]), summary(times["with_hook"])
    return {
        "calls_each": calls,
        "invite_to_200_without_hook": without,
        "invite_to_200_with_hook": with_hook,
        "added_p50_ms": round(with_hook["p50_ms"] - without["p50_ms"], 2),
        "added_p99_ms": round(with_hook["p99_ms"] - without["p99_ms"], 2),
        "hook_asks": hooked.metrics.registry.get_sample_value(
            "sipgw_hook_incoming_total", {"outcome": "accept"}
        ),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="measured calls per gateway")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.calls)), indent=1))
