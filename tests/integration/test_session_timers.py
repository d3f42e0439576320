"""Session timers (RFC 4028) against a real gateway process, SIPp as the caller: the 2xx
carries the negotiated Session-Expires, we refresh on time when we are the refresher (UPDATE,
or a re-INVITE with the same SDP), a caller that stops refreshing gets a BYE, an interval below
our Min-SE gets 422, and the caller's refreshes keep the call up. Intervals of 4 s
(sip.session_timers.min_se_s 2) keep it short."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway.agent import EmbeddedRealtimeServer

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, free_udp_port
from .scenarios import (
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
    sip_message,
)

pytestmark = SIP_TESTS

TIMERS = {"min_se_s": 2, "expires_s": 4}
WITH_UPDATE = "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"
WITHOUT_UPDATE = "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS"


def config(fake: EmbeddedRealtimeServer, tmp_path: Path) -> dict[str, Any]:
    return {
        "realtime": {"url": fake.url, "auth": {"method": "none"}},
        "records": {"calls_dir": str(tmp_path / "calls")},
        "sip": {"session_timers": TIMERS},
    }


def at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def end_reason(tmp_path: Path, ended: dict[str, Any]) -> str:
    record = json.loads((tmp_path / "calls" / f"{ended['call_id']}.json").read_text())
    return str(record["end_reason"])


def timer_invite(media: dict[str, Any], session_expires: str, *extra: str) -> str:
    return invite(
        sdp(**media), headers=("Supported: timer", f"Session-Expires: {session_expires}", *extra)
    )


def we_refresh(path: Path, media: dict[str, Any], allow: str, refreshes: int) -> Path:
    """refresher=uas: SIPp answers the gateway's refreshes 200 (with its SDP to a re-INVITE,
    which must repeat ours: o= version 0), then hangs up. Each refresh says refresher=uac (we
    are its UAC and go on refreshing) and SIPp's 200 says the same, as pjsip does: the gateway
    keeps refreshing (read as the caller's role, it would wait for refreshes and hang up)."""
    method = "UPDATE" if "UPDATE" in allow else "INVITE"
    refresh = [
        recv_request(method, timeout_ms=4000, headers={"Session-Expires": "^ *4;refresher=uac"})
    ]
    if method == "INVITE":
        refresh = [
            recv_request(
                "INVITE",
                timeout_ms=4000,
                headers={"Session-Expires": "^ *4;refresher=uac"},
                body="o=[^ ]+ [0-9]+ 0 IN IP4",
            ),
            ok_to_request(
                sdp(**media),
                ("Contact: <sip:sipp@[local_ip]:[local_port]>", "Session-Expires: 4;refresher=uac"),
            ),
            recv_request("ACK", timeout_ms=2000),
        ]
    else:
        refresh.append(ok_to_request(None, ("Session-Expires: 4;refresher=uac",)))
    return scenario(
        path,
        timer_invite(media, "4;refresher=uas", allow),
        recv(100, optional=True),
        recv(200, headers={"Session-Expires": "^ *4;refresher=uas$", "Require": "^ *timer$"}),
        in_dialog("ACK", 1),
        *(refresh * refreshes),
        in_dialog("BYE", 2, peer_tag=True),
        recv(200),
    )


async def refreshes_seen(tmp_path: Path, allow: str) -> list[float]:
    media = {"port": free_udp_port(), "ip": LOOPBACK}
    async with EmbeddedRealtimeServer() as fake:
        async with GatewayProcess(tmp_path, config(fake, tmp_path)) as gateway:
            path = we_refresh(tmp_path / "refresh.xml", media, allow, refreshes=3)
            await run_sipp(tmp_path, path, gateway.port, timeout=20, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
            [armed, *_] = gateway.find("sip.session_timer")
            sent = gateway.find("sip.refresh_sent")
            answered = gateway.find("sip.refresh_answered")
    assert ended["reason"] == "caller_bye"
    assert armed["interval_s"] == 4 and armed["refresher"] == "uas"
    assert len(sent) == 3 and all(e["status"] == 200 for e in answered), answered
    times = [at(armed)] + [at(e) for e in sent]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_as_refresher_we_send_update_every_half_interval(tmp_path: Path) -> None:
    gaps = await refreshes_seen(tmp_path, WITH_UPDATE)
    print(f"\nUPDATE refreshes, interval 4 s: gaps {[round(g, 3) for g in gaps]}")
    assert all(1.9 <= gap <= 2.5 for gap in gaps), gaps


async def test_as_refresher_without_update_we_reinvite_with_the_same_sdp(tmp_path: Path) -> None:
    gaps = await refreshes_seen(tmp_path, WITHOUT_UPDATE)
    print(f"\nre-INVITE refreshes, interval 4 s: gaps {[round(g, 3) for g in gaps]}")
    assert all(1.9 <= gap <= 2.5 for gap in gaps), gaps


async def test_a_caller_that_never_refreshes_gets_a_bye(tmp_path: Path) -> None:
    """refresher=uac, interval 4: no refresh by 4 - 4/3 s (RFC 4028 §10) -> BYE, end reason
    session_timer_expired in the log, the record and the metric."""
    media = {"port": free_udp_port(), "ip": LOOPBACK}
    path = scenario(
        tmp_path / "silent.xml",
        timer_invite(media, "4;refresher=uac", WITH_UPDATE),
        recv(100, optional=True),
        recv(200, headers={"Session-Expires": "^ *4;refresher=uac$", "Require": "^ *timer$"}),
        in_dialog("ACK", 1),
        recv_request("BYE", timeout_ms=6000),
        ok_to_request(),
    )
    async with EmbeddedRealtimeServer() as fake:
        async with GatewayProcess(tmp_path, config(fake, tmp_path)) as gateway:
            await run_sipp(tmp_path, path, gateway.port, timeout=20, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
            [armed] = gateway.find("sip.session_timer")
            [expired] = gateway.find("sip.session_expired")
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{gateway.metrics_url}/metrics", timeout=aiohttp.ClientTimeout(5)) as r,
            ):
                metrics = await r.text()
    waited = at(expired) - at(armed)
    print(f"\nrefresher=uac, interval 4 s: BYE {waited:.3f} s after the ACK")
    assert armed["refresher"] == "uac"
    assert 4 - 4 / 3 - 0.1 <= waited < 4 - 0.5, waited  # before the expiry, not long before
    assert ended["reason"] == "session_timer_expired"
    assert end_reason(tmp_path, ended) == "session_timer_expired"
    assert 'sipgw_calls_ended_total{reason="session_timer_expired"} 1.0' in metrics


async def test_a_refresh_answered_481_ends_the_call(tmp_path: Path) -> None:
    """We refresh; the caller's side has lost the dialog (481 to our UPDATE): BYE at once,
    end reason session_timer_expired (RFC 3261 §12.2.1.2)."""
    media = {"port": free_udp_port(), "ip": LOOPBACK}
    path = scenario(
        tmp_path / "gone.xml",
        timer_invite(media, "4;refresher=uas", WITH_UPDATE),
        recv(100, optional=True),
        recv(200, headers={"Session-Expires": "^ *4;refresher=uas$"}),
        in_dialog("ACK", 1),
        recv_request("UPDATE", timeout_ms=4000),
        ok_to_request(status="481 Call/Transaction Does Not Exist"),
        recv_request("BYE", timeout_ms=2000),
        ok_to_request(),
    )
    async with EmbeddedRealtimeServer() as fake:
        async with GatewayProcess(tmp_path, config(fake, tmp_path)) as gateway:
            await run_sipp(tmp_path, path, gateway.port, timeout=20, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
            [expired] = gateway.find("sip.session_expired")
    assert "481" in expired["why"]
    assert ended["reason"] == "session_timer_expired"


async def test_an_interval_below_our_min_se_gets_422_and_the_retry_is_answered(
    tmp_path: Path,
) -> None:
    """Session-Expires 1 < min_se_s 2: 422 with Min-SE: 2; the caller's retry with 2 gets 200."""
    media = {"port": free_udp_port(), "ip": LOOPBACK}
    path = scenario(
        tmp_path / "small.xml",
        timer_invite(media, "1"),
        recv(100, optional=True),
        recv(422, headers={"Min-SE": "^ *2$"}),
        in_dialog("ACK", 1, branch="inv1"),
        invite(
            sdp(**media),
            branch="inv2",
            cseq=2,
            headers=("Supported: timer", "Session-Expires: 2;refresher=uac", "Min-SE: 2"),
        ),
        recv(100, optional=True),
        recv(200, headers={"Session-Expires": "^ *2;refresher=uac$"}),
        in_dialog("ACK", 2),
        in_dialog("BYE", 3),
        recv(200),
    )
    async with EmbeddedRealtimeServer() as fake:
        async with GatewayProcess(tmp_path, config(fake, tmp_path)) as gateway:
            await run_sipp(tmp_path, path, gateway.port, timeout=20, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
            [small] = gateway.find("sip.session_interval_too_small")
    assert small["asked_s"] == 1 and small["min_se_s"] == 2
    assert ended["reason"] == "caller_bye"


async def test_the_callers_refreshes_keep_the_call_up(tmp_path: Path) -> None:
    """refresher=uac, interval 4 (deadline 2.67 s): a re-INVITE with the same SDP at 2 s and a
    bodyless UPDATE at 4 s each reset the watchdog; the call lasts 6 s and SIPp hangs up."""
    media = {"port": free_udp_port(), "ip": LOOPBACK}
    refresh = ("Supported: timer", "Session-Expires: 4;refresher=uac")
    path = scenario(
        tmp_path / "refreshing.xml",
        timer_invite(media, "4;refresher=uac", WITH_UPDATE),
        recv(100, optional=True),
        recv(200, headers={"Session-Expires": "^ *4;refresher=uac$"}),
        in_dialog("ACK", 1),
        pause(2000),
        invite(sdp(**media), branch="ri", cseq=2, in_dialog=True, headers=refresh),
        recv(200, headers={"Session-Expires": "^ *4;refresher=uac$", "Require": "^ *timer$"}),
        in_dialog("ACK", 2),
        pause(2000),
        in_dialog("UPDATE", 3, headers=refresh),
        recv(200, headers={"Session-Expires": "^ *4;refresher=uac$"}),
        pause(2000),
        in_dialog("BYE", 4),
        recv(200),
    )
    async with EmbeddedRealtimeServer() as fake:
        async with GatewayProcess(tmp_path, config(fake, tmp_path)) as gateway:
            await run_sipp(tmp_path, path, gateway.port, timeout=20, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
            armed = gateway.find("sip.session_timer")
    assert ended["reason"] == "caller_bye", ended
    assert not gateway.find("sip.session_expired")
    assert len(armed) == 3 and all(a["refresher"] == "uac" for a in armed)  # ACK, re-INVITE, UPDATE


async def test_a_target_refresh_moves_the_requests_we_send(tmp_path: Path) -> None:
    """RFC 3261 §12.2: the Contact of the 2xx to our refresh, then of the caller's UPDATE,
    becomes the Request-URI of our next refresh; our 200 to the UPDATE carries a Contact."""
    media = {"port": free_udp_port(), "ip": LOOPBACK}
    uas = {"Session-Expires": "^ *4;refresher=uas"}  # our 200 to the caller's UPDATE: us
    ours = {"Session-Expires": "^ *4;refresher=uac"}  # our UPDATEs: us, their UAC
    path = scenario(
        tmp_path / "retarget.xml",
        timer_invite(media, "4;refresher=uas", WITH_UPDATE),
        recv(100, optional=True),
        recv(200, headers={"Session-Expires": "^ *4;refresher=uas$"}),
        in_dialog("ACK", 1),
        recv_request("UPDATE", timeout_ms=4000, headers=ours, start="UPDATE sip:sipp@"),
        ok_to_request(None, ("Contact: <sip:moved@[local_ip]:[local_port]>",)),
        recv_request("UPDATE", timeout_ms=4000, headers=ours, start="UPDATE sip:moved@"),
        ok_to_request(),
        in_dialog(
            "UPDATE",
            2,
            peer_tag=True,
            headers=(
                "Contact: <sip:again@[local_ip]:[local_port]>",
                "Supported: timer",
                "Session-Expires: 4;refresher=uas",
            ),
        ),
        recv(200, headers={"Contact": "^ *<sip:", **uas}),
        recv_request("UPDATE", timeout_ms=4000, headers=ours, start="UPDATE sip:again@"),
        ok_to_request(),
        in_dialog("BYE", 3, peer_tag=True),
        recv(200),
    )
    async with EmbeddedRealtimeServer() as fake:
        async with GatewayProcess(tmp_path, config(fake, tmp_path)) as gateway:
            await run_sipp(tmp_path, path, gateway.port, timeout=20, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
    assert ended["reason"] == "caller_bye", ended


async def test_options_say_we_support_timers(tmp_path: Path) -> None:
    """A PBX learns from OPTIONS (RFC 3261 §11.2) that we take SDP and do session timers."""
    options = sip_message(
        "OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
        [
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
            "From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]",
            "To: <sip:[service]@[remote_ip]:[remote_port]>",
            "Call-ID: [call_id]",
            "CSeq: 1 OPTIONS",
            "Max-Forwards: 70",
        ],
        None,
    )
    headers = {"Supported": "^ *timer$", "Accept": "^ *application/sdp$", "Allow": "UPDATE"}
    path = scenario(tmp_path / "options.xml", options, recv(200, headers=headers))
    async with EmbeddedRealtimeServer() as fake:
        async with GatewayProcess(tmp_path, config(fake, tmp_path)) as gateway:
            await run_sipp(tmp_path, path, gateway.port, timeout=10, context=gateway.tail)


async def test_over_tcp_our_contacts_say_tcp(tmp_path: Path) -> None:
    """On a gateway that listens on TCP only, our 2xx and our refreshes carry a Contact with
    transport=tcp: a bare sip: URI is UDP by RFC 3263, where a caller's next requests would go
    nowhere (aiosipua writes it bare; only TLS said its transport before)."""
    media = {"port": free_udp_port(), "ip": LOOPBACK}
    tcp = {"Contact": "^ *<sip:[^>]+;transport=tcp>"}
    path = scenario(
        tmp_path / "tcp.xml",
        timer_invite(media, "4;refresher=uas", WITH_UPDATE),
        recv(100, optional=True),
        recv(200, headers={"Session-Expires": "^ *4;refresher=uas$", **tcp}),
        in_dialog("ACK", 1),
        recv_request(
            "UPDATE", timeout_ms=4000, headers={"Session-Expires": "^ *4;refresher=uac", **tcp}
        ),
        ok_to_request(None, ("Session-Expires: 4;refresher=uac",)),
        in_dialog("BYE", 2, peer_tag=True),
        recv(200),
    )
    async with EmbeddedRealtimeServer() as fake:
        cfg = config(fake, tmp_path)
        cfg["sip"]["transports"] = ["tcp"]
        async with GatewayProcess(tmp_path, cfg) as gateway:
            await run_sipp(tmp_path, path, gateway.port, transport="t1", context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
    assert ended["reason"] == "caller_bye"
