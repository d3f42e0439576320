"""The outbound INVITE client transaction against a transport that records what it is asked
to send: resends and their end, the ACKs (errors on the INVITE's branch, a 2xx's again for a
resent 2xx), one digest retry, CANCEL, timer B. Responses are built as a trunk sends them."""

from __future__ import annotations

import asyncio

import pytest
from aiosipua import SipMessage, SipRequest, SipResponse, build_sdp
from aiosipua.auth import SipDigestAuth

from gateway.sip.digest import DigestVerifier
from gateway.sip.invite_client import InviteClient
from gateway.sip.session_timer import MAX_INTERVAL_S, TimerPolicy
from gateway.sip.transactions import SipTimers
from gateway.sip.transport import Listener

TIMERS = SipTimers(t1=0.01, t2=0.04, t4=0.05)
TRUNK = ("127.0.0.1", 5070)


class Recorder(Listener):
    def __init__(self, reliable: bool = False) -> None:
        super().__init__(("127.0.0.1", 5060))
        self.reliable = reliable
        self.sent: list[SipRequest] = []
        self.changed = asyncio.Event()

    def send(self, message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        assert addr == TRUNK and isinstance(message, SipRequest)
        self.sent.append(SipMessage.parse(bytes(message)))  # type: ignore[arg-type]
        self.changed.set()

    def methods(self) -> list[str]:
        return [r.method for r in self.sent]


def client(transport: Recorder, **kw: object) -> InviteClient:
    return InviteClient(
        transport,
        TIMERS,
        from_uri="sip:+4930123456@trunk.test",
        to_uri="sip:+4917612345678@trunk.test",
        destination=TRUNK,
        contact=("127.0.0.1", 5060),
        offer=build_sdp("127.0.0.1", 10000, 0, "PCMU"),
        **kw,  # type: ignore[arg-type]
    )


def answer(request: SipRequest, status: int, reason: str, *headers: str) -> SipResponse:
    lines = [f"SIP/2.0 {status} {reason}"]
    for name in ("via", "from", "call-id", "cseq"):
        lines.append(f"{name}: {request.headers.get_first(name)}")
    lines.append(f"to: {request.headers.get_first('to')};tag=callee")
    lines += [*headers, "content-length: 0", "", ""]
    message = SipMessage.parse("\r\n".join(lines).encode())
    assert isinstance(message, SipResponse)
    return message


async def until(transport: Recorder, done: object) -> None:
    async with asyncio.timeout(2):
        while not done():  # type: ignore[operator]
            transport.changed.clear()
            await transport.changed.wait()


async def test_udp_resends_until_a_provisional_then_stops() -> None:
    transport = Recorder()
    c = client(transport)
    c.send()
    await until(transport, lambda: len(transport.sent) >= 3)
    c.on_response(answer(c.invite, 180, "Ringing"))  # type: ignore[arg-type]
    count = len(transport.sent)
    assert (await c.provisional()).status == 180
    resending = c._resending
    assert resending is not None
    async with asyncio.timeout(2):
        await resending  # timer A's task ends at its next wake-up, sending nothing more
    assert len(transport.sent) == count and set(transport.methods()) == {"INVITE"}
    assert not c.final.done()  # and timer B does not run once it rings
    assert len({r.via[0].branch for r in transport.sent}) == 1  # resends: the same request
    c.close()


async def test_no_response_at_all_is_a_local_408() -> None:
    transport = Recorder(reliable=True)
    c = client(transport)
    c.send()
    async with asyncio.timeout(2):
        final = await c.final
    assert (final.status, final.local) == (408, True)
    assert transport.methods() == ["INVITE"]  # reliable: never resent


async def test_an_error_is_acked_on_the_invites_branch() -> None:
    transport = Recorder(reliable=True)
    c = client(transport)
    c.send()
    invite = transport.sent[0]
    c.on_response(answer(invite, 486, "Busy Here"))
    final = await c.final
    assert (final.status, final.local) == (486, False)
    ack = transport.sent[-1]
    assert ack.method == "ACK" and ack.via[0].branch == invite.via[0].branch
    assert ack.headers.get_first("to").endswith(";tag=callee")
    assert ack.cseq is not None and ack.cseq.seq == invite.cseq.seq  # type: ignore[union-attr]


async def test_one_challenge_is_answered_a_second_is_the_outcome() -> None:
    transport = Recorder(reliable=True)
    c = client(transport, auth=SipDigestAuth("gateway", "secret"))
    c.send()
    challenge = 'Proxy-Authenticate: Digest realm="t", nonce="n1", algorithm=MD5'
    c.on_response(answer(transport.sent[0], 407, "Proxy Authentication Required", challenge))
    assert transport.methods() == ["INVITE", "ACK", "INVITE"]
    retry = transport.sent[2]
    assert 'username="gateway"' in (retry.headers.get_first("proxy-authorization") or "")
    assert retry.cseq.seq == transport.sent[0].cseq.seq + 1  # type: ignore[union-attr]
    c.on_response(answer(retry, 407, "Proxy Authentication Required", challenge))
    assert (await c.final).status == 407
    assert transport.methods() == ["INVITE", "ACK", "INVITE", "ACK"]


def challenged_with_session_timers() -> tuple[DigestVerifier, Recorder, InviteClient, str]:
    """An INVITE with session timers, challenged by a trunk that is the gateway's own digest
    verifier (it tracks nonce counts) and answered: the trunk, the transport, the client, and
    the challenge header it answered."""
    trunk = DigestVerifier("trunk.test", {"gateway": "secret"})
    transport = Recorder(reliable=True)
    c = client(
        transport,
        auth=SipDigestAuth("gateway", "secret"),
        session_timers=TimerPolicy(expires_s=100, min_se_s=90),
    )
    c.send()
    challenge = f"WWW-Authenticate: {trunk.challenges(TRUNK[0])[0]}"
    c.on_response(answer(transport.sent[0], 401, "Unauthorized", challenge))
    return trunk, transport, c, challenge


async def test_after_a_challenge_a_422s_retry_counts_the_nonce_on_and_may_be_challenged_again() -> (
    None
):
    """The trunk is the gateway's own digest verifier, which tracks nonce counts: the INVITE
    sent again after a 422 carries the same nonce with nc=2 (nc=1 again was a replay, refused
    as such), and a trunk that challenges that INVITE anew (its nonces serve once) is
    answered with the new nonce."""
    trunk, transport, c, _ = challenged_with_session_timers()
    first = c.invite
    assert first is not None and trunk.verify(first, TRUNK[0]).ok
    c.on_response(answer(first, 422, "Session Interval Too Small", "min-se: 600"))
    second = c.invite
    assert second is not first and second is not None
    assert second.headers.get_first("session-expires") == "600"
    verdict = trunk.verify(second, TRUNK[0])
    assert verdict.ok, verdict.reason
    assert "nc=00000002" in (second.headers.get_first("authorization") or "")
    fresh = f"WWW-Authenticate: {trunk.challenges(TRUNK[0], stale=True)[0]}"
    c.on_response(answer(second, 401, "Unauthorized", fresh))
    third = c.invite
    assert third is not second and third is not None and not c.final.done()
    assert trunk.verify(third, TRUNK[0]).ok
    assert third.headers.get_first("session-expires") == "600"
    c.on_response(answer(third, 401, "Unauthorized", fresh))  # twice for one request: the end
    assert (await c.final).status == 401
    assert transport.methods() == ["INVITE", "ACK"] * 4


async def test_after_a_422s_retry_a_challenge_with_the_same_nonce_ends_the_attempt() -> None:
    """A trunk that refuses the credentials of the INVITE sent again after a 422 challenges
    with the nonce it was answered with (RFC 3261 §22.2): the attempt ends there; answering
    it again would be nc=1 of that nonce, a replay (the verifier refuses it as one)."""
    _, transport, c, challenge = challenged_with_session_timers()
    c.on_response(answer(c.invite, 422, "Session Interval Too Small", "min-se: 600"))  # type: ignore[arg-type]
    second = c.invite
    assert second is not None and "nc=00000002" in (second.headers.get_first("authorization") or "")
    c.on_response(answer(second, 401, "Unauthorized", challenge))  # the same nonce: refused
    assert c.final.done() and c.final.result().status == 401
    assert c.invite is second and transport.methods() == ["INVITE", "ACK"] * 3


async def test_a_2xx_is_acked_and_a_resent_2xx_gets_the_same_ack() -> None:
    transport = Recorder(reliable=True)
    c = client(transport)
    c.send()
    ok = answer(transport.sent[0], 200, "OK", "Contact: <sip:callee@10.0.0.9:5080>")
    c.on_response(ok)
    assert (await c.final).status == 200 and c.dialog.remote_tag == "callee"
    assert c.dialog.remote_target == "sip:callee@10.0.0.9:5080"
    c.on_response(ok)
    first, second = transport.sent[1], transport.sent[2]
    assert first.method == second.method == "ACK" and bytes(first) == bytes(second)
    assert first.uri == "sip:callee@10.0.0.9:5080"
    assert first.cseq.seq == transport.sent[0].cseq.seq  # type: ignore[union-attr]
    assert first.via[0].branch != transport.sent[0].via[0].branch  # a 2xx's ACK: new branch


async def test_cancel_copies_the_invite_and_its_487_ends_the_call() -> None:
    transport = Recorder(reliable=True)
    c = client(transport)
    c.send()
    invite = transport.sent[0]
    c.on_response(answer(invite, 180, "Ringing"))
    c.cancel()
    c.cancel()  # once
    cancel = transport.sent[1]
    assert transport.methods() == ["INVITE", "CANCEL"]
    assert cancel.uri == invite.uri and cancel.via[0].branch == invite.via[0].branch
    assert cancel.cseq.method == "CANCEL" and cancel.cseq.seq == invite.cseq.seq  # type: ignore[union-attr]
    c.on_response(answer(invite, 487, "Request Terminated"))
    final = await c.final
    assert final.status == 487 and c.cancelled
    assert transport.methods() == ["INVITE", "CANCEL", "ACK"]


@pytest.mark.parametrize("name", ["UDP", "TCP"])
async def test_the_via_names_the_transport(name: str) -> None:
    transport = Recorder(reliable=name == "TCP")
    transport.name = name
    c = client(transport)
    c.send()
    assert transport.sent[0].via[0].transport.upper() == name
    c.close()


async def test_a_cancel_waits_for_a_provisional_response() -> None:
    """RFC 3261 §9.1: no CANCEL before a provisional response; the 100 Trying releases it."""
    transport = Recorder(reliable=True)
    c = client(transport)
    c.send()
    invite = transport.sent[0]
    c.cancel()
    assert transport.methods() == ["INVITE"] and c.cancelled
    c.on_response(answer(invite, 100, "Trying"))
    assert transport.methods() == ["INVITE", "CANCEL"]
    c.on_response(answer(invite, 180, "Ringing"))
    assert transport.methods() == ["INVITE", "CANCEL"]  # once
    c.on_response(answer(invite, 487, "Request Terminated"))
    assert (await c.final).status == 487
    assert transport.methods() == ["INVITE", "CANCEL", "ACK"]


@pytest.mark.parametrize(("status", "after"), [(486, ["ACK"]), (200, ["ACK"])])
async def test_a_final_before_any_provisional_makes_the_pending_cancel_moot(
    status: int, after: list[str]
) -> None:
    """Over UDP the INVITE is still resent while the CANCEL waits; a final response ends
    both: an error is ACKed on the INVITE's branch, a 2xx in the dialog (the call BYEs it)."""
    transport = Recorder()
    c = client(transport)
    c.send()
    invite = transport.sent[0]
    c.cancel()
    await until(transport, lambda: len(transport.sent) >= 3)  # timer A goes on
    assert set(transport.methods()) == {"INVITE"}
    c.on_response(answer(invite, status, "Busy Here" if status == 486 else "OK"))
    final = await c.final
    assert final.status == status and c.cancelled
    assert "CANCEL" not in transport.methods() and transport.methods()[-1:] == after
    assert c._resending is None  # no timer of ours runs any more


async def test_a_pending_cancel_still_ends_at_timer_b_without_any_response() -> None:
    transport = Recorder()
    c = client(transport)
    c.send()
    c.cancel()
    async with asyncio.timeout(2):
        final = await c.final
    assert (final.status, final.local) == (408, True)
    assert "CANCEL" not in transport.methods()


async def test_a_422_raises_the_interval_once_and_the_2xx_sets_the_timer() -> None:
    """RFC 4028 §7: Supported/Session-Expires/Min-SE on the INVITE; a 422 with a longer
    Min-SE gets the INVITE again (new CSeq) with it, a second 422 is the outcome; the 2xx's
    Session-Expires is the timer, its refresher a role in our transaction (none: us)."""
    transport = Recorder(reliable=True)
    c = client(transport, session_timers=TimerPolicy(expires_s=100, min_se_s=90))
    c.send()
    first = c.invite
    assert first is not None
    assert first.headers.get_first("supported") == "timer"
    assert first.headers.get_first("session-expires") == "100"  # no refresher: the UAS picks
    assert first.headers.get_first("min-se") == "90"
    c.on_response(answer(first, 422, "Session Interval Too Small", "min-se: 600"))
    second = c.invite
    assert second is not first and second is not None and not c.final.done()
    assert second.headers.get_first("session-expires") == "600"
    assert second.cseq is not None and first.cseq is not None
    assert second.cseq.seq == first.cseq.seq + 1
    c.on_response(answer(second, 422, "Session Interval Too Small", "min-se: 1200"))
    assert (await c.final).status == 422  # once only: a callee cannot keep us asking
    assert transport.methods() == ["INVITE", "ACK", "INVITE", "ACK"]

    for raw, expected in (
        ("600;refresher=uas", (600, False)),
        ("600;refresher=uac", (600, True)),
        ("600", (600, True)),
        ("99999999;refresher=uac", (MAX_INTERVAL_S, True)),
        ("1;refresher=uac", (90, True)),  # below our Min-SE (§5): a refresh storm otherwise
    ):
        c = client(Recorder(reliable=True), session_timers=TimerPolicy(100, 90))
        c.send()
        assert c.invite is not None
        c.on_response(answer(c.invite, 200, "OK", f"session-expires: {raw}"))
        assert c.timer is not None and (c.timer.interval, c.timer.we_refresh) == expected
    c = client(Recorder(reliable=True), session_timers=TimerPolicy(100, 90))
    c.send()
    assert c.invite is not None
    c.on_response(answer(c.invite, 200, "OK"))
    assert c.timer is None and c.answer is not None  # the callee wants none


async def test_without_a_policy_the_invite_says_nothing_of_timers() -> None:
    c = client(Recorder(reliable=True))
    c.send()
    assert c.invite is not None
    for name in ("supported", "session-expires", "min-se"):
        assert c.invite.headers.get_first(name) is None
    c.on_response(answer(c.invite, 422, "Session Interval Too Small", "min-se: 600"))
    assert (await c.final).status == 422
