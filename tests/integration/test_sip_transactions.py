"""INVITE transactions against SIPp: retransmissions absorbed, final responses resent until
ACK (timer G, the 2xx of §13.3.1.4) or timer H, and a 2xx never ACKed ends the call."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.agent import EmbeddedRealtimeServer
from gateway.sip.transactions import SipTimers

from .gateway_proc import GatewayProcess, InProcessGateway
from .realtime_gate import RealtimeGate
from .scenarios import (
    FAST_TIMERS,
    SIP_TESTS,
    Traced,
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
from .test_hostile_network import Peer
from .test_sip_robustness import SDP, request

pytestmark = SIP_TESTS

DEFAULT_T1 = SipTimers().t1  # what the gateway runs with unless a test shrinks it
RESENDS = len(list(FAST_TIMERS.retransmit_offsets()))


def ack(cseq: int = 1) -> str:
    return in_dialog("ACK", cseq)


def bye_and_ok(cseq: int = 2) -> list[str]:
    return [in_dialog("BYE", cseq), recv(200)]


def assert_answered_at_once(trace: list[Traced], answer: str) -> None:
    """SIPp's second INVITE was answered well inside T1 (0.5 s here): by the transaction, not
    by timer G's resend, which would satisfy the scenario's `recv` just as well."""
    second = [m for m in trace if m.sent and m.start.startswith("INVITE ")][1]
    reply = next(
        m for m in trace if not m.sent and m.at >= second.at and m.start.startswith(answer)
    )
    assert reply.at - second.at < DEFAULT_T1 / 2, (
        f"the retransmitted INVITE was answered {reply.at - second.at:.3f} s later: by timer G "
        f"(T1 = {DEFAULT_T1} s), not by the transaction"
    )


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
        sipp = await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
        assert_answered_at_once(sipp_trace(sipp.messages_path), "SIP/2.0 200")
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
            sipp = await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
            assert_answered_at_once(sipp_trace(sipp.messages_path), "SIP/2.0 503")
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


# --- through a socket of the test's, with a T1 long enough to tell answer from timer -----------

# T1 of 3 s: timer G's first resend comes 3 s after the first send, so an answer within
# ANSWER_S of a retransmitted INVITE can only be the transaction's answer to it.
SLOW_TIMERS = SipTimers(t1=3.0, t2=4.0, t4=5.0)
ANSWER_S = 1.0


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def in_dialog_request(original: bytes, answer: bytes, method: str, cseq: int, branch: str) -> bytes:
    """ACK or BYE for the dialog the INVITE's answer made: its To (with tag), a new branch."""
    to = next(line for line in answer.split(b"\r\n") if line.lower().startswith(b"to:"))
    head, _, _ = original.partition(b"\r\n\r\n")
    lines = []
    for line in head.split(b"\r\n"):
        if line.startswith(b"INVITE "):
            line = method.encode() + line[len(b"INVITE") :]
        elif line.lower().startswith(b"to:"):
            line = to
        elif line.startswith(b"CSeq:"):
            line = f"CSeq: {cseq} {method}".encode()
        elif line.startswith(b"Via:"):
            line = line.split(b";branch=")[0] + b";branch=z9hG4bK-" + branch.encode()
        elif line.startswith(b"Content-"):
            continue
        lines.append(line)
    return b"\r\n".join([*lines, b"Content-Length: 0"]) + b"\r\n\r\n"


async def next_final(peer: Peer, timeout: float) -> bytes | None:
    """The next final response within ``timeout`` (provisionals skipped), or None."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        data = await peer.next(left)
        if data is None:
            return None
        if status_of(data) >= 200:
            return data
    return None


async def test_a_retransmitted_invite_gets_the_200_at_once_and_is_absorbed_after_the_ack() -> None:
    """§17.2.1: the retransmission is answered with the last response there and then (not by
    timer G, 3 s later). RFC 6026: after the ACK the transaction lingers, so a copy of the
    INVITE still in flight is absorbed: no answer, no second call, no re-INVITE."""
    async with InProcessGateway(timers=SLOW_TIMERS) as gateway:
        pbx = Peer()
        try:
            first = request("rt200", pbx.port, body=SDP)
            pbx.send(first, gateway.port)
            ok = await next_final(pbx, timeout=10)
            assert ok is not None and status_of(ok) == 200
            pbx.send(first, gateway.port)  # "the 200 was lost"
            again = await next_final(pbx, timeout=ANSWER_S)
            assert again is not None, (
                f"no answer to the retransmitted INVITE within {ANSWER_S} s (timer G would "
                f"resend at T1 = {SLOW_TIMERS.t1} s)"
            )
            assert status_of(again) == 200 and again == ok
            pbx.send(in_dialog_request(first, ok, "ACK", 1, "ack1"), gateway.port)
            # ACKed: the 200 is not resent any more (this wait also puts a second between
            # the ACK and the late copy below, longer than any loop turn)
            assert await pbx.next(timeout=ANSWER_S) is None
            pbx.send(first, gateway.port)  # a copy delayed in the network, after the ACK
            late = await pbx.next(timeout=ANSWER_S)
            assert late is None, f"the INVITE after the ACK was answered: {late!r}"
            assert [e["resent"] for e in gateway.find("sip.invite_retransmission")] == [200, 200]
            assert len(gateway.find("call.received")) == 1
            assert len(gateway.realtime_sessions) == 1
            pbx.send(in_dialog_request(first, ok, "BYE", 2, "bye1"), gateway.port)
            bye_ok = await next_final(pbx, timeout=5)
            assert bye_ok is not None and status_of(bye_ok) == 200
            await gateway.wait_for("call.ended", timeout=10)
        finally:
            pbx.close()


async def test_a_retransmitted_invite_gets_the_503_again_at_once() -> None:
    async with EmbeddedRealtimeServer(refuse_status=429, retry_after_s=3) as service:
        config = {"realtime": {"url": service.url, "auth": {"method": "none"}}}
        async with InProcessGateway(config, timers=SLOW_TIMERS) as gateway:
            pbx = Peer()
            try:
                first = request("rt503", pbx.port, body=SDP)
                pbx.send(first, gateway.port)
                refused = await next_final(pbx, timeout=10)
                assert refused is not None and status_of(refused) == 503
                pbx.send(first, gateway.port)
                again = await next_final(pbx, timeout=ANSWER_S)
                assert again is not None, (
                    f"no answer to the retransmitted INVITE within {ANSWER_S} s (timer G would "
                    f"resend at T1 = {SLOW_TIMERS.t1} s)"
                )
                assert again == refused
                ack = in_dialog_request(first, refused, "ACK", 1, "rt503")  # same branch: §17.1.1.3
                pbx.send(ack, gateway.port)
                assert await pbx.next(timeout=ANSWER_S) is None  # ACKed: no more 503s
                assert len(gateway.find("call.received")) == 1
                assert len(gateway.find("call.rejected")) == 1  # one Realtime attempt
            finally:
                pbx.close()
