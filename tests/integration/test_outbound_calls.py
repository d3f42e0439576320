"""Outbound calls through a real trunk: SIPp plays the trunk and the phone behind it (answer,
busy, no answer, early media, a 407 challenge), the call is asked for over the control API,
and what happened is read from the gateway's log, SIPp's own checks and the fake model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.agent import EmbeddedRealtimeServer

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp, free_udp_port
from .scenarios import caller_ulaw
from .test_control_api import TOKEN, Api
from .test_features import config as agent_config
from .test_features import sent
from .trunk_scenarios import answering, challenging, early_media, refusing, ringing_forever

pytestmark = pytest.mark.integration

TO, FROM = "+4917612345678", "+4930123456"
ENV = {"GATEWAY_API_TOKEN": TOKEN, "TRUNK_PASSWORD": "trunk-secret"}


def outbound_config(
    fake: EmbeddedRealtimeServer, trunk_port: int, **outbound: Any
) -> tuple[int, dict[str, Any]]:
    api_port = free_udp_port(also_tcp=True)
    cfg = agent_config(fake)
    cfg["api"] = {"bind": LOOPBACK, "port": api_port, "token_env": "GATEWAY_API_TOKEN"}
    cfg["sip"] = {
        "outbound": {
            "trunk": f"{LOOPBACK}:{trunk_port}",
            "caller_ids": [r"\+4930\d{4,8}"],
            "destinations": [r"\+49(15|16|17)\d{7,9}"],
            **outbound,
        }
    }
    return api_port, cfg


async def place(api_port: int, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        status, _, data = await Api(api_port, session).request("POST", "/v1/calls", body)
        return status, data


async def test_an_answered_call_runs_like_an_inbound_one_and_the_agent_speaks_first(
    tmp_path: Path,
) -> None:
    async with EmbeddedRealtimeServer() as fake:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=answering(tmp_path / "answer.xml"))
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                status, body = await place(api_port, {"to": TO, "from": FROM})
                assert status == 202, body
                answered = await gateway.wait_for("call.answered", timeout=20)
                assert answered["call_id"] == body["id"] and answered["direction"] == "outbound"
                ended = await gateway.wait_for("call.ended", timeout=20)
                assert ended["reason"] == "caller_bye" and ended["rtp_out"] > 0
                assert await sipp.wait(timeout=20) == 0, sipp.report()
    kinds = [e["type"] for e in sent(fake) if e["type"] != "input_audio_buffer.append"]
    assert "response.create" in kinds  # the agent spoke first: its greeting was asked for
    dialing = gateway.find("call.dialing")
    assert dialing and dialing[0]["call_id"] == body["id"] and dialing[0]["to"] == TO
