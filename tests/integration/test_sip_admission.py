"""Who gets a call through: digest authentication, sip.max_calls, and OPTIONS that tell a
PBX or dispatcher to go elsewhere while the gateway is full or draining."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .gateway_proc import GatewayProcess, InProcessGateway
from .scenarios import (
    SIP_TESTS,
    in_dialog,
    invite,
    invite_expecting,
    options_expecting,
    pause,
    recv,
    run_sipp,
    scenario,
    sdp,
)

pytestmark = SIP_TESTS

USER, PASSWORD = "asterisk", "s3cret-for-tests"
# SIPp answers the first challenge and knows only MD5: the gateway must offer MD5 alone to it,
# as to an older PBX (SHA-256 first, the default, is tested in test_sip_digest.py).
AUTH_CONFIG = {
    "sip": {
        "auth": {
            "realm": "gw.test",
            "users": [{"username": USER, "password_env": "GW_PW"}],
            "algorithms": ["MD5"],
        }
    }
}


def auth_uri(port: int) -> tuple[str, str]:
    """SIPp's digest uri is sip:HOST:PORT unless told: the gateway wants the Request-URI."""
    return ("-auth_uri", f"service@127.0.0.1:{port}")


def authenticated_call(path: Path, password: str) -> Path:
    return scenario(
        path,
        invite(sdp()),
        recv(100, optional=True),
        recv(401, headers={"WWW-Authenticate": 'realm="gw.test".*qop="auth"'}, auth=True),
        in_dialog("ACK", 1, branch="inv1"),
        invite(
            sdp(),
            branch="inv2",
            cseq=2,
            headers=(f"[authentication username={USER} password={password}]",),
        ),
        recv(100, optional=True),
        recv(200) if password == PASSWORD else recv(401),
        in_dialog("ACK", 2) if password == PASSWORD else in_dialog("ACK", 2, branch="inv2"),
        *([pause(300), in_dialog("BYE", 3), recv(200)] if password == PASSWORD else []),
    )


async def test_digest_authentication_admits_the_right_password(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path, AUTH_CONFIG, env={"GW_PW": PASSWORD}) as gateway:
        path = authenticated_call(tmp_path / "auth_ok.xml", PASSWORD)
        await run_sipp(
            tmp_path, path, gateway.port, context=gateway.tail, args=auth_uri(gateway.port)
        )
        ended = await gateway.wait_for("call.ended", timeout=10)
        assert ended["reason"] == "caller_bye"
        (rejected,) = gateway.find("call.rejected")
        assert rejected["status"] == 401 and "no credentials" in rejected["reason"]
        assert len(gateway.find("realtime.session_open")) == 1


async def test_digest_authentication_refuses_a_wrong_password(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path, AUTH_CONFIG, env={"GW_PW": PASSWORD}) as gateway:
        path = authenticated_call(tmp_path / "auth_bad.xml", "wrong")
        await run_sipp(
            tmp_path, path, gateway.port, context=gateway.tail, args=auth_uri(gateway.port)
        )
        await gateway.wait_for("call.rejected", timeout=10, where=lambda e: "wrong" in e["reason"])
        assert not gateway.find("realtime.session_open")
        assert PASSWORD not in "\n".join(gateway.raw)


async def test_full_gateway_refuses_invites_and_options_with_503(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path, {"sip": {"max_calls": 1}}) as gateway:
        long_call = scenario(
            tmp_path / "long_call.xml",
            invite(sdp()),
            recv(100, optional=True),
            recv(200),
            in_dialog("ACK", 1),
            pause(4000),
            in_dialog("BYE", 2),
            recv(200),
        )
        first = asyncio.ensure_future(
            run_sipp(tmp_path, long_call, gateway.port, context=gateway.tail)
        )
        await gateway.wait_for("call.answered", timeout=15)
        busy = options_expecting(tmp_path / "options_full.xml", 503)
        await run_sipp(tmp_path, busy, gateway.port, context=gateway.tail)
        full = invite_expecting(
            tmp_path / "invite_full.xml", 503, headers={"Retry-After": "^ *[0-9]+$"}
        )
        await run_sipp(tmp_path, full, gateway.port, context=gateway.tail)
        (rejected,) = gateway.find("call.rejected")
        assert rejected["status"] == 503 and "max_calls" in rejected["reason"]
        await first
        await gateway.wait_for("call.ended", timeout=10)
        await run_sipp(
            tmp_path, options_expecting(tmp_path / "options_free.xml", 200), gateway.port
        )
        assert len(gateway.find("realtime.session_open")) == 1


async def test_draining_gateway_answers_options_and_invites_with_503(tmp_path: Path) -> None:
    async with InProcessGateway() as gateway:
        await run_sipp(tmp_path, options_expecting(tmp_path / "ok.xml", 200), gateway.port)
        gateway.gateway.draining = True
        await run_sipp(tmp_path, options_expecting(tmp_path / "drain.xml", 503), gateway.port)
        await run_sipp(tmp_path, invite_expecting(tmp_path / "inv.xml", 503), gateway.port)
        assert not gateway.realtime_sessions
