"""deploy/kamailio/kamailio.cfg for real: Kamailio spreads calls over two gateways, probes
them with OPTIONS, and keeps calls flowing when one gateway stops."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .gateway_proc import GatewayProcess
from .kamailio_proc import BINARY, Kamailio
from .scenarios import in_dialog, invite, pause, recv, run_sipp, scenario, sdp

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("sipp") is None or BINARY is None,
        reason="sipp or kamailio not installed",
    ),
]


def short_call(path: Path) -> Path:
    return scenario(
        path,
        invite(sdp()),
        recv(100, optional=True),
        recv(200, timeout_ms=15000),
        in_dialog("ACK", 1),
        pause(300),
        in_dialog("BYE", 2),  # to Kamailio, not the Record-Route: the Call-ID hash finds it
        recv(200),
    )


async def test_calls_spread_over_two_gateways_and_survive_one_stopping(tmp_path: Path) -> None:
    (tmp_path / "gw1").mkdir()
    (tmp_path / "gw2").mkdir()
    async with (
        GatewayProcess(tmp_path / "gw1") as gw1,
        GatewayProcess(tmp_path / "gw2") as gw2,
        Kamailio(tmp_path / "kamailio", [gw1.port, gw2.port]) as kamailio,
    ):
        calls = short_call(tmp_path / "call.xml")

        def context() -> str:
            return f"{kamailio.tail()}\n--- gw1\n{gw1.tail(15)}\n--- gw2\n{gw2.tail(15)}"

        await run_sipp(tmp_path, calls, kamailio.port, calls=16, context=context)
        first = len(gw1.find("call.answered")), len(gw2.find("call.answered"))
        assert sum(first) == 16 and min(first) > 0, f"calls per gateway: {first}"

        await gw2.stop()
        await run_sipp(tmp_path, calls, kamailio.port, calls=8, context=context)
        assert len(gw1.find("call.answered")) == first[0] + 8
        ended = gw1.find("call.ended")
        assert all(e["reason"] == "caller_bye" for e in ended), ended
