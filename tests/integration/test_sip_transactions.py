"""INVITE transactions against SIPp: retransmissions absorbed, final responses resent until
ACK (timer G, the 2xx of §13.3.1.4) or timer H, and a 2xx never ACKed ends the call."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.agent import EmbeddedRealtimeServer

from .gateway_proc import GatewayProcess, InProcessGateway
from .realtime_gate import RealtimeGate
from .scenarios import (
    FAST_TIMERS,
    SIP_TESTS,
    in_dialog,
    invite,
    ok_to_request,
    pause,
    recv,
    recv_request,
    run_sipp,
    scenario,
    sdp,
    sipp_trace,
)

pytestmark = SIP_TESTS

RESENDS = len(list(FAST_TIMERS.retransmit_offsets()))


def ack(cseq: int = 1) -> str:
    return in_dialog("ACK", cseq)


def bye_and_ok(cseq: int = 2) -> list[str]:
    return [in_dialog("BYE", cseq), recv(200)]


async def test_invite_retransmitted_after_the_200_gets_the_200_again(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path) as gateway:
        path = scenario(
            tmp_path / "retrans_200.xml",
            invite(sdp()),
            recv(100, optional=True),
            recv(200),
            invite(sdp()),  # same branch: the 200 was lost, says the caller
            recv(200),
            ack(),
            pause(200),
            *bye_and_ok(),
        )
        await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
        await gateway.wait_for("call.ended", timeout=10)
        absorbed = gateway.find("sip.invite_retransmission")
        assert [e["resent"] for e in absorbed] == [200]
        assert len(gateway.find("call.received")) == 1
        assert len(gateway.find("realtime.session_open")) == 1


async def test_invite_retransmitted_after_a_503_gets_the_503_again(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer(refuse_status=429, retry_after_s=3) as service:
        config = {"realtime": {"url": service.url, "auth": {"method": "none"}}}
        async with GatewayProcess(tmp_path, config) as gateway:
            path = scenario(
                tmp_path / "retrans_503.xml",
                invite(sdp()),
                recv(100, optional=True),
                recv(503, headers={"Retry-After": "^ *3$"}),
                invite(sdp()),
                recv(503, headers={"Retry-After": "^ *3$"}),
                in_dialog("ACK", 1, branch="inv1"),
            )
            await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
            await gateway.wait_for("sip.invite_retransmission", timeout=10)
            assert len(gateway.find("call.received")) == 1
            assert len(gateway.find("call.rejected")) == 1  # one Realtime attempt, not two


async def test_invite_retransmitted_while_the_session_opens_gets_100(tmp_path: Path) -> None:
    async with RealtimeGate() as gate:
        config = {"realtime": {"url": gate.url, "auth": {"method": "none"}}}
        async with InProcessGateway(config) as gateway:
            path = scenario(
                tmp_path / "retrans_early.xml",
                invite(sdp()),
                recv(100),
                invite(sdp()),
                recv(100),
                recv(200, timeout_ms=20000),
                ack(),
                pause(200),
                *bye_and_ok(),
            )
            run = asyncio.ensure_future(
                run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
            )
            await gateway.wait_for("sip.invite_retransmission", timeout=15)
            # The retransmission may arrive before the call's connection reaches the gate.
            await gate.wait("the Realtime connection", lambda: gate.connections >= 1, 10)
            assert gate.connections == 1 and not gateway.find("call.answered")
            gate.release.set()
            await run
            assert gate.connections == 1
            assert len(gateway.find("call.received")) == 1


async def test_error_response_is_resent_until_its_ack(tmp_path: Path) -> None:
    config = {"media": {"codecs": ["PCMA"]}}  # the offer's PCMU only: 488
    async with InProcessGateway(config, timers=FAST_TIMERS) as gateway:
        path = scenario(
            tmp_path / "timer_g.xml",
            invite(sdp()),
            recv(100, optional=True),
            recv(488),
            recv(488),  # after T1
            recv(488),  # after 2*T1 more
            in_dialog("ACK", 1, branch="inv1"),
            pause(1000),  # a 488 after the ACK would be unexpected: SIPp fails the call
        )
        sipp = await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
        got = [m.at for m in sipp_trace(sipp.messages_path) if m.start.startswith("SIP/2.0 488")]
        assert len(got) == 3
        first, second = got[1] - got[0], got[2] - got[1]
        assert second > 1.4 * first, f"timer G does not double: {first:.3f} s, {second:.3f} s"
        assert len(gateway.uas.invites) == 0  # timer I (T4) ended the transaction


async def test_error_response_without_ack_stops_at_timer_h(tmp_path: Path) -> None:
    config = {"media": {"codecs": ["PCMA"]}}
    async with InProcessGateway(config, timers=FAST_TIMERS) as gateway:
        path = scenario(
            tmp_path / "timer_h.xml",
            invite(sdp()),
            recv(100, optional=True),
            *[recv(488) for _ in range(1 + RESENDS)],
            pause(int(FAST_TIMERS.t2 * 3000)),  # one more would fail the scenario
        )
        await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
        timeout = await gateway.wait_for("sip.ack_timeout", timeout=10)
        assert timeout["status"] == 488
        assert len(gateway.uas.invites) == 0


async def test_200_is_resent_until_its_ack(tmp_path: Path) -> None:
    async with InProcessGateway(timers=FAST_TIMERS) as gateway:
        path = scenario(
            tmp_path / "resend_200.xml",
            invite(sdp()),
            recv(100, optional=True),
            recv(200),
            recv(200),
            recv(200),
            ack(),
            pause(1000),  # no 200 after the ACK
            *bye_and_ok(),
        )
        await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
        ended = await gateway.wait_for("call.ended", timeout=10)
        assert ended["reason"] == "caller_bye"
        assert not gateway.find("sip.ack_timeout")


async def test_200_never_acked_ends_the_call_with_bye_and_closes_the_session(
    tmp_path: Path,
) -> None:
    async with InProcessGateway(timers=FAST_TIMERS) as gateway:
        path = scenario(
            tmp_path / "no_ack.xml",
            invite(sdp()),
            recv(100, optional=True),
            *[recv(200) for _ in range(1 + RESENDS)],
            recv_request("BYE", timeout_ms=10000),
            ok_to_request(),
        )
        await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
        ended = await gateway.wait_for("call.ended", timeout=10)
        assert ended["reason"] == "ack_timeout"
        (session,) = gateway.realtime_sessions
        assert session.closed
        assert not gateway.gateway.calls and len(gateway.uas.invites) == 0


async def test_cancel_while_the_session_opens_gets_200_and_487_and_closes_it(
    tmp_path: Path,
) -> None:
    async with RealtimeGate() as gate:  # never released: the session stays half-open
        config = {"realtime": {"url": gate.url, "auth": {"method": "none"}}}
        async with GatewayProcess(tmp_path, config) as gateway:
            path = scenario(
                tmp_path / "cancel.xml",
                invite(sdp()),
                recv(100),
                pause(1000),  # the caller hangs up while it still rings
                in_dialog("CANCEL", 1, branch="inv1"),
                recv(200),  # to the CANCEL
                recv(487),  # to the INVITE
                recv(487),  # again after T1: not ACKed yet
                in_dialog("ACK", 1, branch="inv1"),
                pause(1500),  # and not again once ACKed
            )
            await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
            assert ended["reason"] == "caller_cancel"
            assert gate.connections == 1, "the CANCEL came before the session began to open"
            await gate.wait(
                "the gateway closing its Realtime connection", lambda: gate.open == 0, 10
            )
            assert not gateway.find("realtime.session_open")
