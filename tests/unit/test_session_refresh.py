"""Our session refreshes as a UAC (refresh.py) and the UAS's side of a session timer, through
the real UDP dispatch with sends kept in a list: the 2xx headers, a same-SDP re-INVITE and its
ACK (again for a retransmitted 2xx), UPDATE refused -> re-INVITE, 422 -> a longer interval (once),
481 -> the call ends, glare -> 491."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

from aiosipua import IncomingCall, SipMessage, SipRequest, SipResponse, parse_sdp

from gateway.sip.door import Door
from gateway.sip.session_timer import TimerPolicy
from gateway.sip.transactions import SipTimers
from gateway.sip.uas import GatewayUAS
from gateway.sip.udp import UdpTransport

PEER = ("127.0.0.1", 5070)
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\n"
)
OURS = SDP.replace("o=- 1 1", "o=- 7 0").replace("4000", "4002")


def invite(*headers: str, cseq: int = 1, to_tag: str = "", branch: str = "z9hG4bK-1") -> bytes:
    head = [
        "INVITE sip:echo@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport",
        "From: caller <sip:caller@127.0.0.1:5070>;tag=abc",
        f"To: <sip:echo@127.0.0.1:5060>{';tag=' + to_tag if to_tag else ''}",
        "Call-ID: 1@127.0.0.1",
        f"CSeq: {cseq} INVITE",
        "Contact: <sip:caller@127.0.0.1:5070>",
        "Max-Forwards: 70",
        *headers,
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n" + SDP).encode()


class Wire(UdpTransport):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 5060), Door([ipaddress.ip_network("127.0.0.0/8")]))
        self.sent: list[SipMessage] = []

    def send_to(self, data: bytes | SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        self.sent.append(SipMessage.parse(data if isinstance(data, bytes) else bytes(data)))

    def receive(self, data: bytes | SipMessage) -> None:
        self._received(data if isinstance(data, bytes) else bytes(data), PEER)

    def requests(self, method: str) -> list[SipRequest]:
        return [m for m in self.sent if isinstance(m, SipRequest) and m.method == method]


async def until(check: Callable[[], object]) -> None:
    """Let the loop run until `check` holds (at most 200 turns)."""
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never met")


async def answered_call(*headers: str) -> tuple[GatewayUAS, Wire, IncomingCall, str]:
    wire = Wire()
    uas = GatewayUAS(
        wire, user_agent="t", timers=SipTimers(t1=0.05, t2=0.4, t4=0.2),
        session_timers=TimerPolicy(expires_s=4, min_se_s=2, refresher="uas"),
    )  # fmt: skip
    wire.on_message = uas._on_message
    calls: list[IncomingCall] = []
    uas.on_invite = calls.append
    uas.refreshes.local_sdp = lambda call: parse_sdp(OURS)
    wire.receive(invite(*headers))
    [call] = calls
    call.accept(parse_sdp(OURS))
    ok = [m for m in wire.sent if isinstance(m, SipResponse) and m.status_code == 200][-1]
    tag = call.dialog.local_tag
    ack = invite(to_tag=tag).replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
    wire.receive(ack.replace(b"branch=z9hG4bK-1", b"branch=z9hG4bK-ack"))
    if call._session_timer is not None:
        call._session_timer.cancel()  # the test sends refreshes itself
    return uas, wire, call, ok.headers.get_first("session-expires") or ""


def reply(request: SipRequest, status: int, *headers: tuple[str, str], body: str = "") -> bytes:
    response = SipResponse(status_code=status, reason_phrase="X")
    for name in ("via", "from", "to", "call-id", "cseq"):
        for value in request.headers.get(name):
            response.headers.append(name, value)
    to = response.headers.get_first("to") or ""
    if ";tag=" not in to:
        response.headers.set_single("To", to + ";tag=abc")
    for name, value in headers:
        response.headers.set_single(name, value)
    if body:
        response.text = body
        response.headers.set_single("Content-Type", "application/sdp")
    return bytes(response)


async def test_the_2xx_carries_the_timer_and_a_reinvite_refresh_is_acked() -> None:
    uas, wire, call, se = await answered_call(
        "Supported: timer", "Session-Expires: 4;refresher=uas", "Allow: INVITE, ACK, BYE"
    )
    assert se == "4;refresher=uas"
    ok = [m for m in wire.sent if isinstance(m, SipResponse) and m.status_code == 200][-1]
    assert ok.headers.get_first("require") == "timer"
    assert ok.headers.get_first("supported") == "timer"
    answers: list[object] = []
    uas.refreshes.on_answer = lambda c, sdp: answers.append(sdp)
    uas.refreshes.send(call)
    await until(lambda: wire.requests("INVITE"))
    [refresh] = wire.requests("INVITE")
    assert refresh.text == OURS  # the same SDP, o= version unchanged
    # We are this request's UAC and go on refreshing: "uac" (RFC 4028 §4, §7.4).
    assert refresh.headers.get_first("session-expires") == "4;refresher=uac"
    cseq = refresh.cseq.seq if refresh.cseq else -1
    wire.receive(reply(refresh, 200, ("Session-Expires", "4;refresher=uac"), body=SDP))
    await until(lambda: wire.requests("ACK"))
    [ack] = wire.requests("ACK")
    assert ack.headers.get_first("cseq") == f"{cseq} ACK"
    assert ack.via[0].branch != refresh.via[0].branch  # an ACK of a 2xx is its own transaction
    wire.receive(reply(refresh, 200, ("Session-Expires", "4;refresher=uac"), body=SDP))
    assert len(wire.requests("ACK")) == 2  # the 2xx again: our ACK again
    assert len(answers) == 1
    uas.refreshes.send(call)  # the next refresh takes the next CSeq (the ACK took none)
    await until(lambda: len(wire.requests("INVITE")) == 2)
    second = wire.requests("INVITE")[1]
    assert second.cseq is not None and second.cseq.seq == cseq + 1
    uas.refreshes.close()


async def test_update_refused_falls_back_to_reinvite_and_422_lengthens() -> None:
    uas, wire, call, _ = await answered_call(
        "Supported: timer", "Session-Expires: 4", "Allow: INVITE, ACK, BYE, UPDATE"
    )
    uas.refreshes.send(call)
    await until(lambda: wire.requests("UPDATE"))
    [update] = wire.requests("UPDATE")
    assert not update.body
    wire.receive(reply(update, 501))
    await until(lambda: wire.requests("INVITE"))
    [reinvite] = wire.requests("INVITE")
    wire.receive(reply(reinvite, 422, ("Min-SE", "8")))
    await until(lambda: len(wire.requests("INVITE")) == 2)
    assert wire.requests("ACK")  # the 422 is ACKed in its transaction
    [ack] = wire.requests("ACK")
    assert ack.via[0].branch == reinvite.via[0].branch
    retry = wire.requests("INVITE")[1]
    assert retry.headers.get_first("session-expires") == "8;refresher=uac"
    wire.receive(reply(retry, 422, ("Min-SE", "16")))  # a second 422 in a row: no retry
    await until(lambda: len(wire.requests("ACK")) == 2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(wire.requests("INVITE")) == 2
    uas.refreshes.close()
    if call._session_timer is not None:
        call._session_timer.cancel()


async def test_481_to_a_refresh_ends_the_call_and_glare_gets_491() -> None:
    uas, wire, call, _ = await answered_call("Supported: timer", "Session-Expires: 4")
    expired: list[IncomingCall] = []
    uas.on_session_expired = expired.append
    uas.refreshes.send(call)
    await until(lambda: wire.requests("INVITE"))
    [refresh] = wire.requests("INVITE")
    wire.receive(invite(cseq=2, to_tag=call.dialog.local_tag, branch="z9hG4bK-glare"))
    assert any(isinstance(m, SipResponse) and m.status_code == 491 for m in wire.sent)
    wire.receive(reply(refresh, 481))
    await until(lambda: expired)
    assert expired == [call]


async def test_a_caller_without_timers_gets_none() -> None:
    _, wire, call, se = await answered_call()
    assert se == "" and call._session_timer is None
    assert not any(m.headers.get("require") for m in wire.sent)


async def test_the_refresher_of_a_refresh_names_a_role_in_that_transaction() -> None:
    """RFC 4028 §4: "uac" is whoever sent the request. In a 2xx to our refresh, "uac" keeps us
    the refresher (a peer that will not refresh answers so), "uas" hands it to the caller, whose
    refreshes we then watch for; our next request says which it is."""
    uas, wire, call, se = await answered_call(
        "Supported: timer", "Session-Expires: 4;refresher=uas", "Allow: INVITE, ACK, BYE, UPDATE"
    )
    assert se == "4;refresher=uas" and call.timer.we_refresh
    uas.refreshes.send(call)
    await until(lambda: wire.requests("UPDATE"))
    first = wire.requests("UPDATE")[0]
    assert first.headers.get_first("session-expires") == "4;refresher=uac"
    wire.receive(reply(first, 200, ("Session-Expires", "4;refresher=uac")))
    await until(lambda: not uas.refreshes._tasks)
    assert call.timer.we_refresh  # unchanged: the timer runs on as it was
    uas.refreshes.send(call)
    await until(lambda: len(wire.requests("UPDATE")) == 2)
    second = wire.requests("UPDATE")[1]
    wire.receive(reply(second, 200, ("Session-Expires", "1;refresher=uas")))  # the caller's now
    await until(lambda: not call.timer.we_refresh)
    assert call.timer.interval == 2  # raised to our Min-SE: §5 allows no less
    call._session_timer.cancel()
    uas.refreshes.send(call)  # the next (a retry, say) carries what is in force
    await until(lambda: len(wire.requests("UPDATE")) == 3)
    third = wire.requests("UPDATE")[2]
    assert third.headers.get_first("session-expires") == "2;refresher=uas"
    wire.receive(reply(third, 200, ("Session-Expires", "6;refresher=uas")))
    await until(lambda: call.timer.interval == 6)
    assert not call.timer.we_refresh and not call._session_timer.we_refresh
    call._session_timer.cancel()
    # A request of ours while the caller refreshes (a hold re-INVITE) leaves it to the caller.
    status = asyncio.ensure_future(uas.refreshes.reinvite(call, parse_sdp(OURS)))
    await until(lambda: wire.requests("INVITE"))
    [hold] = wire.requests("INVITE")
    assert hold.headers.get_first("session-expires") == "6;refresher=uas"
    wire.receive(reply(hold, 200, ("Session-Expires", "6;refresher=uas"), body=SDP))
    assert await asyncio.wait_for(status, 5) == 200
    assert not call.timer.we_refresh
    if call._session_timer is not None:
        call._session_timer.cancel()
    uas.refreshes.close()
