"""deploy/kamailio/kamailio.cfg for real: Kamailio spreads calls over two gateways, probes
them with OPTIONS, and keeps calls flowing when one gateway stops; on a hostile network it
answers only its trusted sources, holds each to a rate (pike) and refuses malformed requests
(sanity)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .gateway_proc import GatewayProcess
from .kamailio_proc import BINARY, Kamailio
from .peers import LOOPBACK
from .scenarios import in_dialog, invite, pause, recv, run_sipp, scenario, sdp
from .test_hostile_network import STRANGER, THIRD_PARTY, Peer
from .test_sip_robustness import SDP, request

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


async def test_strangers_floods_and_malformed_requests_stop_at_kamailio(tmp_path: Path) -> None:
    """127.0.0.1 is the PBX, 127.0.0.3 a trusted trunk gone wrong (a flood), 127.0.0.2 a
    stranger: the stranger gets no answer at all and reaches no gateway, the flood is cut by
    pike, a malformed request gets 400 from sanity, and the PBX is answered throughout."""
    (tmp_path / "gw").mkdir()
    flood, density = 300, 20
    async with (
        GatewayProcess(tmp_path / "gw") as gateway,
        Kamailio(
            tmp_path / "kamailio", [gateway.port], trusted=(LOOPBACK, THIRD_PARTY),
            pike_reqs=density,
        ) as kamailio,
    ):  # fmt: skip
        uri = f"sip:{LOOPBACK}:{kamailio.port}"  # OPTIONS Kamailio answers itself
        pbx, stranger, trunk = Peer(), Peer(STRANGER), Peer(THIRD_PARTY)
        try:
            stranger.send(request("s-opt", stranger.port, method="OPTIONS", uri=uri), kamailio.port)
            stranger.send(request("s-inv", stranger.port, body=SDP), kamailio.port)
            pbx.send(request("p-opt", pbx.port, method="OPTIONS", uri=uri), kamailio.port)
            assert await pbx.final() == 200
            bad = request("p-bad", pbx.port, method="OPTIONS", uri=uri, cseq="1 INVITE")
            pbx.send(bad, kamailio.port)
            assert await pbx.final() == 400  # CSeq method is not the request's
            for i in range(flood):
                trunk.send(request(f"t{i}", trunk.port, method="OPTIONS", uri=uri), kamailio.port)
            answered = 0
            while await trunk.next(1.0) is not None:
                answered += 1
            print(f"\n{flood} OPTIONS from a trusted source at once: {answered} answered")
            assert density <= answered <= 3 * density + 10, answered  # pike: between x and 3x
            pbx.send(request("p-opt2", pbx.port, method="OPTIONS", uri=uri), kamailio.port)
            assert await pbx.final() == 200  # a flood from another source costs the PBX nothing
            assert await stranger.next(1.0) is None, stranger.received
            assert not gateway.find("call.received")
            assert "malformed request from 127.0.0.1" in kamailio.tail(200)
        finally:
            for peer in (pbx, stranger, trunk):
                peer.close()
