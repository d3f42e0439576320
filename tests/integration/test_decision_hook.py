"""The decision webhook (hooks.call_incoming) with real sockets: an aiohttp server on loopback
as the hook, the gateway in the test's loop, INVITEs from a UDP socket of the test's. Every
action, the signature checked by the Standard Webhooks library, a slow, a broken and an
unreachable hook, and a caller who hangs up while the hook is asked."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from .event_receiver import SECRET as EVENTS_SECRET
from .event_receiver import EventReceiver
from .gateway_proc import GatewayProcess, InProcessGateway
from .hook_server import HookServer, reply
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .scenarios import FAST_TIMERS, SIP_TESTS
from .test_call_record_endings import assert_record, cseq_method, records, with_to_of
from .test_hostile_network import Peer
from .test_sip_robustness import SDP, request
from .test_sip_transactions import in_dialog_request, next_final, status_of

pytestmark = SIP_TESTS

SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
SECRET_ENV = "TEST_DECISION_HOOK_SECRET"
PROFILES = {
    "sales": {"instructions": "Sales desk.", "voice": "ash"},
    "support": {"instructions": "Support desk."},
}


def hook_config(tmp_path: Path, hook: HookServer, **settings: Any) -> dict[str, Any]:
    return {
        "records": {"calls_dir": str(tmp_path / "calls")},
        "profiles": PROFILES,
        "hooks": {"call_incoming": {"url": hook.url, **settings}},
    }


def invite(name: str, port: int, *extra: str) -> bytes:
    return request(name, port, body=SDP, extra=extra)


def header(answer: bytes, name: str) -> str | None:
    for line in answer.decode().split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def hook_count(gateway: InProcessGateway, outcome: str) -> float:
    value = gateway.gateway.metrics.registry.get_sample_value(
        "sipgw_hook_incoming_total", {"outcome": outcome}
    )
    return value or 0.0


async def ack_final(pbx: Peer, port: int, name: str, answer: bytes) -> None:
    """The ACK of a non-2xx final response (same branch as the INVITE)."""
    ack = request(name, pbx.port, method="ACK", cseq="1 ACK")
    pbx.send(with_to_of(ack, answer), port)


async def test_accept_with_profile_variables_instructions_and_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)

    async def accept(body: dict[str, Any]) -> web.Response:
        return reply(
            {
                "action": "accept",
                "profile": "sales",
                "instructions": "You help ${first_name}, a ${tier} customer (CRM ${x_crm_id}).",
                "greeting": "Greet ${first_name} by name.",
                "variables": {"first_name": "Ada", "tier": "gold"},
                "metadata": {"crm_id": "A-17", "score": 0.9, "vip": True},
            }
        )

    async with HookServer(accept) as hook:
        config = hook_config(tmp_path, hook, secret_env=SECRET_ENV)
        async with InProcessGateway(config) as gateway:
            pbx = Peer()
            try:
                sent = invite(
                    "accepted", pbx.port, "X-Crm-Id: 42",
                    "P-Asserted-Identity: <sip:+15551234@carrier.example>",
                    "Diversion: <sip:100@pbx.example>;reason=no-answer",
                    "Authorization: Digest username=\"never-forwarded\"",
                )  # fmt: skip
                pbx.send(sent, gateway.port)
                ok = await next_final(pbx, timeout=10)
                assert ok is not None and status_of(ok) == 200, ok
                pbx.send(in_dialog_request(sent, ok, "ACK", 1, "accepted-ack"), gateway.port)
                await gateway.wait_for("call.answered", timeout=10)
                (session,) = gateway.realtime_sessions
                config_seen = session.config
                pbx.send(in_dialog_request(sent, ok, "BYE", 2, "accepted-bye"), gateway.port)
                await gateway.wait_for("call.ended", timeout=10)
                assert hook_count(gateway, "accept") == 1
            finally:
                pbx.close()
    (headers, raw), = hook.requests  # fmt: skip
    # The Standard Webhooks library, not our code, checks the signature.
    body = Webhook(SECRET).verify(raw, headers)
    assert body["call_id"] == records(tmp_path / "calls")["accepted"]["call_id"]
    assert (body["caller"], body["dialed"], body["transport"]) == ("torture", "echo", "udp")
    assert body["source"] == f"127.0.0.1:{pbx.port}"
    assert body["headers"] == {
        "x-crm-id": "42",
        "p-asserted-identity": "<sip:+15551234@carrier.example>",
        "diversion": "<sip:100@pbx.example>;reason=no-answer",
    }
    assert config_seen["instructions"] == "You help Ada, a gold customer (CRM 42)."
    assert config_seen["audio"]["output"]["voice"] == "ash"  # the sales profile's
    record = records(tmp_path / "calls")["accepted"]
    assert (record["profile"], record["end_reason"]) == ("sales", "caller_bye")
    assert record["metadata"] == {"crm_id": "A-17", "score": 0.9, "vip": True}


async def test_reject_answers_the_status_and_leaves_a_record(tmp_path: Path) -> None:
    async def busy(body: dict[str, Any]) -> web.Response:
        return reply({"action": "reject", "status": 486, "reason": "Agents Busy",
                      "metadata": {"queue": "full"}})  # fmt: skip

    async with HookServer(busy) as hook:
        async with InProcessGateway(hook_config(tmp_path, hook)) as gateway:
            pbx = Peer()
            try:
                pbx.send(invite("rejected", pbx.port), gateway.port)
                answer = await next_final(pbx, timeout=10)
                assert answer is not None and status_of(answer) == 486, answer
                assert answer.split(b"\r\n", 1)[0] == b"SIP/2.0 486 Agents Busy"
                await ack_final(pbx, gateway.port, "rejected", answer)
                ended = await gateway.wait_for("call.ended", timeout=10)
                assert ended["reason"] == "hook_rejected"
                assert not gateway.realtime_sessions  # nothing was set up
                assert hook_count(gateway, "reject") == 1
            finally:
                pbx.close()
    found = records(tmp_path / "calls")
    assert_record(found, "rejected", "hook_rejected", 486)
    assert found["rejected"]["metadata"] == {"queue": "full"}


async def test_redirect_answers_302_with_the_contact(tmp_path: Path) -> None:
    async def elsewhere(body: dict[str, Any]) -> web.Response:
        return reply({"action": "redirect", "target": "sip:600@pbx.example;transport=tcp"})

    async with HookServer(elsewhere) as hook:
        async with InProcessGateway(hook_config(tmp_path, hook)) as gateway:
            pbx = Peer()
            try:
                pbx.send(invite("redirected", pbx.port), gateway.port)
                answer = await next_final(pbx, timeout=10)
                assert answer is not None and status_of(answer) == 302, answer
                assert header(answer, "Contact") == "<sip:600@pbx.example;transport=tcp>"
                await ack_final(pbx, gateway.port, "redirected", answer)
                await gateway.wait_for("call.ended", timeout=10)
                assert not gateway.realtime_sessions
            finally:
                pbx.close()
    assert_record(records(tmp_path / "calls"), "redirected", "hook_redirected", 302)


async def test_the_caller_has_100_trying_and_180_ringing_while_the_hook_is_asked(
    tmp_path: Path,
) -> None:
    async def slow_accept(body: dict[str, Any]) -> web.StreamResponse:
        return await hook.held(reply({"action": "accept"}))

    async with HookServer(slow_accept) as hook:
        async with InProcessGateway(hook_config(tmp_path, hook, ringing=True)) as gateway:
            pbx = Peer()
            try:
                pbx.send(invite("ringing", pbx.port), gateway.port)
                async with asyncio.timeout(10):
                    await hook.asked.wait()
                # The hook has not answered: what the caller has now, it had while waiting.
                provisional = [await pbx.next(5), await pbx.next(5)]
                assert [status_of(p) for p in provisional if p] == [100, 180]
                assert not hook.release.is_set()
                hook.release.set()
                ok = await next_final(pbx, timeout=10)
                assert ok is not None and status_of(ok) == 200, ok
            finally:
                pbx.close()


async def test_a_slow_hook_lets_routes_decide_by_default(tmp_path: Path) -> None:
    async def never(body: dict[str, Any]) -> web.StreamResponse:
        return await hook.held(reply({"action": "reject"}))

    async with HookServer(never) as hook:
        config = hook_config(tmp_path, hook, timeout_s=0.3)
        async with InProcessGateway(config) as gateway:
            pbx = Peer()
            try:
                pbx.send(invite("slow", pbx.port), gateway.port)
                ok = await next_final(pbx, timeout=10)
                assert ok is not None and status_of(ok) == 200, ok
                (failed,) = gateway.find("hook.failed")
                assert (failed["outcome"], failed["on_failure"]) == ("timeout", "default")
                assert failed["reason"] == "no answer within 0.3 s"
                assert hook_count(gateway, "timeout") == 1
                routed = await gateway.wait_for("call.routed", timeout=5)
                assert routed["profile"] == "default"
            finally:
                pbx.close()


async def test_a_slow_hook_refuses_the_call_with_on_failure_reject(tmp_path: Path) -> None:
    async def never(body: dict[str, Any]) -> web.StreamResponse:
        return await hook.held(reply({"action": "accept"}))

    async with HookServer(never) as hook:
        config = hook_config(tmp_path, hook, timeout_s=0.3, on_failure="reject")
        async with InProcessGateway(config) as gateway:
            pbx = Peer()
            try:
                pbx.send(invite("slow-reject", pbx.port), gateway.port)
                answer = await next_final(pbx, timeout=10)
                assert answer is not None and status_of(answer) == 503, answer
                await ack_final(pbx, gateway.port, "slow-reject", answer)
                await gateway.wait_for("call.ended", timeout=10)
            finally:
                pbx.close()
    assert_record(records(tmp_path / "calls"), "slow-reject", "hook_failed", 503)


BROKEN: dict[str, tuple[web.Response, str, str]] = {
    "http-500": (reply({"action": "accept"}, status=500), "http_error", "HTTP 500"),
    "redirect-3xx": (
        web.Response(status=307, headers={"Location": "http://127.0.0.2/"}),
        "http_error",
        "HTTP 307",
    ),
    "bad-json": (web.Response(text="{not json", content_type="application/json"), "bad_answer",
                 "not JSON"),
    "oversized": (
        reply({"action": "accept", "instructions": "x" * 70_000}),
        "bad_answer",
        "larger than 65536 bytes",
    ),
    "wrong-types": (reply({"action": "reject", "status": "486"}), "bad_answer", "status:"),
    "injection": (
        reply({"action": "redirect", "target": "sip:a@b.example>\r\nX-Evil: 1"}),
        "bad_answer",
        "target: spaces, control",
    ),
    "unknown-profile": (reply({"action": "accept", "profile": "billing"}), "bad_answer",
                        "not a configured profile"),
}  # fmt: skip


async def test_broken_answers_follow_on_failure_and_are_logged_with_the_reason(
    tmp_path: Path,
) -> None:
    async def broken(body: dict[str, Any]) -> web.Response:
        name = next(n for n in BROKEN if n in body["dialed"])
        return BROKEN[name][0]

    async with HookServer(broken) as hook:
        config = hook_config(tmp_path, hook, on_failure="reject")
        async with InProcessGateway(config) as gateway:
            pbx = Peer()
            try:
                for name, (_, outcome, why) in BROKEN.items():
                    sent = request(name, pbx.port, body=SDP, uri=f"sip:{name}@127.0.0.1")
                    pbx.send(sent, gateway.port)
                    answer = await next_final(pbx, timeout=10)
                    assert answer is not None and status_of(answer) == 503, (name, answer)
                    assert b"X-Evil" not in answer
                    await ack_final(pbx, gateway.port, name, answer)
                    failed = await gateway.wait_for(
                        "hook.failed", timeout=5, where=lambda e, n=name: e["sip_call_id"] == n
                    )
                    assert (failed["outcome"], failed["on_failure"]) == (outcome, "reject"), name
                    assert why in failed["reason"], (name, failed)
                assert len(gateway.find("hook.failed")) == len(BROKEN)  # once each
                # call.ended is logged once the record is written.
                await gateway.wait_count("call.ended", len(BROKEN), timeout=10)
                assert not gateway.realtime_sessions
            finally:
                pbx.close()
    found = records(tmp_path / "calls")
    for name in BROKEN:
        assert_record(found, name, "hook_failed", 503)


async def test_an_unreachable_hook_lets_routes_decide(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    config = {"hooks": {"call_incoming": {"url": f"http://127.0.0.1:{port}/hook"}}}
    try:
        async with InProcessGateway(config) as gateway:
            pbx = Peer()
            try:
                pbx.send(invite("unreachable", pbx.port), gateway.port)
                ok = await next_final(pbx, timeout=10)
                assert ok is not None and status_of(ok) == 200, ok
                (failed,) = gateway.find("hook.failed")
                assert failed["outcome"] == "unreachable"
                assert "could not be reached" in failed["reason"]
            finally:
                pbx.close()
    finally:
        closed.close()


async def test_a_cancel_while_the_hook_is_asked_gets_487_and_the_answer_is_ignored(
    tmp_path: Path,
) -> None:
    async def slow_accept(body: dict[str, Any]) -> web.StreamResponse:
        return await hook.held(reply({"action": "accept"}))

    async with HookServer(slow_accept) as hook:
        config = hook_config(tmp_path, hook, timeout_s=5)
        async with InProcessGateway(config, timers=FAST_TIMERS) as gateway:
            pbx = Peer()
            try:
                pbx.send(invite("cancelled", pbx.port), gateway.port)
                async with asyncio.timeout(10):
                    await hook.asked.wait()
                cancel = request("cancelled", pbx.port, method="CANCEL", cseq="1 CANCEL")
                pbx.send(cancel, gateway.port)
                got: dict[str, bytes] = {}
                for _ in range(2):  # 200 to the CANCEL, 487 to the INVITE, in either order
                    answer = await next_final(pbx, timeout=5)
                    assert answer is not None, f"only {sorted(got)} answered"
                    got[cseq_method(answer)] = answer
                assert {m: status_of(a) for m, a in got.items()} == {"CANCEL": 200, "INVITE": 487}
                await ack_final(pbx, gateway.port, "cancelled", got["INVITE"])
                ended = await gateway.wait_for("call.ended", timeout=10)
                assert ended["reason"] == "caller_cancel"
                hook.release.set()  # the hook answers now: nobody is listening any more
                assert await next_final(pbx, timeout=1) is None  # no 200 ever follows
                assert not gateway.realtime_sessions
                assert hook_count(gateway, "cancelled") == 1
            finally:
                pbx.close()
    assert_record(records(tmp_path / "calls"), "cancelled", "caller_cancel", 487)
    assert json.loads(hook.requests[0][1])["dialed"] == "echo"


async def test_a_sipp_call_through_the_gateway_process_is_decided_by_the_hook(
    tmp_path: Path,
) -> None:
    """The gateway as users run it (`python -m gateway run`, the secret from its environment)
    and SIPp's own uac scenario: 180 while the hook is asked, then 200, ACK, BYE. The hook's
    metadata is in the record and in the call's events after the decision."""

    async def accept(body: dict[str, Any]) -> web.Response:
        return reply({"action": "accept", "profile": "support", "metadata": {"ticket": "T-9"}})

    async with HookServer(accept) as hook, EventReceiver() as receiver:
        config = hook_config(tmp_path, hook, secret_env=SECRET_ENV, ringing=True)
        config["hooks"]["events"] = {
            "url": receiver.url,
            "secret_env": "EVENTS_SECRET",
            "outbox_dir": str(tmp_path / "outbox"),
        }
        env = {SECRET_ENV: SECRET, "EVENTS_SECRET": EVENTS_SECRET}
        async with GatewayProcess(tmp_path, config, env=env) as gateway:
            sipp = Sipp(
                tmp_path,
                ["-sn", "uac", "-s", "3000", "-m", 1, "-d", 200, "-i", LOOPBACK,
                 "-p", free_udp_port(), "-mp", free_port_block(4), f"{LOOPBACK}:{gateway.port}"],
            )  # fmt: skip
            await sipp.start()
            assert await sipp.wait(timeout=30) == 0, sipp.report()
            await gateway.wait_for("call.ended", timeout=10)
            routed = await gateway.wait_for("call.routed", timeout=5)
            assert routed["profile"] == "support"
            await receiver.wait_until(
                lambda r: any(e["type"] == "call.ended" for e in r.delivered), 20, "call.ended"
            )
    ((headers, raw),) = hook.requests
    assert Webhook(SECRET).verify(raw, headers)["dialed"] == "3000"
    assert "SIP/2.0 180 Ringing" in (tmp_path / "sipp.messages.log").read_text(errors="replace")
    (record,) = records(tmp_path / "calls").values()
    assert (record["profile"], record["metadata"]) == ("support", {"ticket": "T-9"})
    events = {e["type"]: e["data"] for e in receiver.delivered}
    assert list(events) == ["call.started", "call.answered", "call.ended"]
    assert events["call.started"]["metadata"] == {}  # sent before the hook was asked
    assert events["call.answered"]["metadata"] == {"ticket": "T-9"}
    assert events["call.ended"]["metadata"] == {"ticket": "T-9"}
    assert events["call.ended"]["record"]["metadata"] == {"ticket": "T-9"}
