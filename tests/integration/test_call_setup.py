"""Call set-up against SIPp: what a PBX sees when a call can or cannot be taken."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.agent import EmbeddedRealtimeServer

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .scenarios import G729_ONLY, invite_expecting, options_expecting

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
]


async def run_sipp(workdir: Path, scenario: Path, gateway: GatewayProcess) -> Sipp:
    """Run a one-call SIPp scenario against the gateway; fail with SIPp's own report."""
    sipp = Sipp(
        workdir,
        [
            "-sf", scenario, "-m", 1, "-i", LOOPBACK, "-p", free_udp_port(),
            "-mp", free_port_block(4), "-timeout", "20", "-timeout_error",
            f"{LOOPBACK}:{gateway.port}",
        ],
        name=scenario.stem,
    )  # fmt: skip
    await sipp.start()
    code = await sipp.wait(timeout=30)
    assert code == 0, f"SIPp scenario {scenario.name} failed:\n{sipp.report()}\n{gateway.tail()}"
    return sipp


async def test_options_is_answered(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path) as gateway:
        await run_sipp(tmp_path, options_expecting(tmp_path / "options.xml", 200), gateway)


async def test_refused_realtime_handshake_gives_503_with_retry_after(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer(refuse_status=429, retry_after_s=7) as service:
        config = {"realtime": {"url": service.url, "auth": {"method": "none"}}}
        async with GatewayProcess(tmp_path, config) as gateway:
            scenario = invite_expecting(
                tmp_path / "refused.xml", 503, headers={"Retry-After": "^ *7$"}
            )
            await run_sipp(tmp_path, scenario, gateway)
            rejected = await gateway.wait_for("call.rejected", timeout=10)
            assert rejected["http_status"] == 429
            assert "quota" in rejected["reason"]
            assert not gateway.find("call.answered")


async def test_unreachable_realtime_service_gives_503(tmp_path: Path) -> None:
    dead = f"ws://{LOOPBACK}:{free_udp_port(also_tcp=True)}/openai/v1/realtime"
    config = {"realtime": {"url": dead, "auth": {"method": "none"}, "connect_timeout_s": 3}}
    async with GatewayProcess(tmp_path, config) as gateway:
        await run_sipp(tmp_path, invite_expecting(tmp_path / "dead.xml", 503), gateway)
        rejected = await gateway.wait_for("call.rejected", timeout=10)
        assert "cannot reach" in rejected["reason"]


async def test_source_outside_allow_from_gets_403(tmp_path: Path) -> None:
    config = {"sip": {"allow_from": ["10.0.0.0/8"]}}
    async with GatewayProcess(tmp_path, config) as gateway:
        await run_sipp(tmp_path, invite_expecting(tmp_path / "forbidden.xml", 403), gateway)
        assert not gateway.find("realtime.session_open")


async def test_offer_without_g711_gets_488(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path) as gateway:
        scenario = invite_expecting(tmp_path / "g729.xml", 488, offer=G729_ONLY)
        await run_sipp(tmp_path, scenario, gateway)
        rejected = await gateway.wait_for("call.rejected", timeout=10)
        assert "no common codec" in rejected["reason"]
        assert not gateway.find("realtime.session_open")
