"""Routing through real SIP: the dialed number picks the profile; its greeting plays first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .test_dial import run_dial

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
]

SPEECH = "one, two, three, four, five, six"
ROUTES = {
    "profiles": {
        "sales": {"instructions": "Sales line for ${caller}.", "greeting": "Greet the caller."},
        "support": {"instructions": "Support line."},
    },
    "routes": [
        {"match": {"dialed": "^1000$"}, "profile": "sales"},
        {"match": {"dialed": "^2"}, "profile": "support"},
    ],
}


async def test_dialed_number_routes_the_call(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path, ROUTES) as gateway:
        for number in ("1000", "2345", "9999"):
            sipp = Sipp(
                tmp_path,
                ["-sn", "uac", "-s", number, "-m", 1, "-d", 200, "-i", LOOPBACK,
                 "-p", free_udp_port(), "-mp", free_port_block(4), f"{LOOPBACK}:{gateway.port}"],
                name=f"uac-{number}",
            )  # fmt: skip
            await sipp.start()
            assert await sipp.wait(timeout=30) == 0, sipp.report()
        routed = [e["profile"] for e in gateway.events if e.get("event") == "call.routed"]
    assert routed == ["sales", "support", "default"]


async def test_routed_greeting_is_heard_first(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path, ROUTES) as gateway:
        reports = []
        for number in ("1000", "9999"):
            code, report, err = await run_dial(gateway.uri(number), "--say", SPEECH)
            assert code == 0, err
            reports.append(report["time_to_first_audio_ms"])
    greeted, plain = reports
    # The echo agent answers a greeting with a chime at once; without one, the first audio is
    # the echo of the caller's turn, after the caller has finished speaking.
    assert greeted < 1000
    assert plain > 2000
