"""realtime.failover: when the Realtime side cannot take a call, or loses one it cannot
restore, the caller is sent to a human (302 before the answer, REFER after) instead of a 503
or a BYE. SIPp is the caller (and the transferee); the service is the embedded fake, made to
refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.agent import EmbeddedRealtimeServer

from .gateway_proc import GatewayProcess
from .rtp_caller import RtpCaller
from .scenarios import invite_expecting, sipp_dial
from .test_realtime_calls import expect_sipp_ok, sipp

pytestmark = pytest.mark.integration

HUMAN = "sip:queue-humans@pbx.example"


def config(service: EmbeddedRealtimeServer, tmp_path: Path) -> dict[str, object]:
    return {
        "realtime": {"url": service.url, "auth": {"method": "none"}, "failover": {"target": HUMAN}},
        "records": {"calls_dir": str(tmp_path / "calls")},
    }


async def test_a_session_that_cannot_be_opened_sends_the_caller_to_a_human(
    tmp_path: Path,
) -> None:
    async with EmbeddedRealtimeServer() as service:
        service.refuse_status = 503
        async with GatewayProcess(tmp_path, config(service, tmp_path)) as gateway:
            scenario = invite_expecting(
                tmp_path / "redirected.xml",
                302,
                headers={"Contact": r"sip:queue-humans@pbx\.example"},
            )
            caller = sipp(tmp_path, scenario, gateway)
            await caller.start()
            await expect_sipp_ok(caller, gateway)
            failover = await gateway.wait_for("call.failover", timeout=10)
            ended = await gateway.wait_for("call.ended", timeout=10)
    assert f"Contact: <{HUMAN}>" in caller.messages_path.read_text()
    assert failover["when"] == "before_answer" and "503" in failover["reason"]
    assert ended["reason"] == "failover_redirect"
    [record] = (tmp_path / "calls").glob("*.json")
    assert json.loads(record.read_text())["sip_status"] == 302


async def test_a_session_lost_mid_call_and_not_restored_is_transferred(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as service, RtpCaller() as phone:
        async with GatewayProcess(tmp_path, config(service, tmp_path)) as gateway:
            dial = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, transfer_outcome="200 OK")
            async with dial:
                await gateway.wait_for("call.answered", timeout=20)
                service.refuse_status = 503  # no new session: the reconnect fails
                await service.sessions[0].drop(1011)
                await gateway.wait_for("realtime.reconnect_failed", timeout=10)
                ended = await gateway.wait_for("call.ended", timeout=20)
                assert await dial.wait(15) == 0, dial.report()  # REFER, NOTIFY 200, our BYE
    assert f"Refer-To: <{HUMAN}>" in dial.messages_path.read_text()
    assert ended["reason"] == "failover_transferred"
    [transfer] = gateway.find("call.transfer")
    assert transfer["ok"] is True and transfer["by"] == "failover"


async def test_without_failover_the_caller_gets_503(tmp_path: Path) -> None:
    """The control: the same refusal without failover is the plain 503."""
    async with EmbeddedRealtimeServer() as service:
        service.refuse_status = 503
        cfg = {"realtime": {"url": service.url, "auth": {"method": "none"}}}
        async with GatewayProcess(tmp_path, cfg) as gateway:
            caller = sipp(tmp_path, invite_expecting(tmp_path / "refused.xml", 503), gateway)
            await caller.start()
            await expect_sipp_ok(caller, gateway)
            ended = await gateway.wait_for("call.ended", timeout=10)
    assert ended["reason"] == "realtime_unavailable" and not gateway.find("call.failover")
