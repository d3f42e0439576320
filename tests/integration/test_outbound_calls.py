"""Outbound calls through a real trunk: SIPp plays the trunk and the phone behind it (answer,
busy, no answer, early media, a 407 challenge), the call is asked for over the control API,
and what happened is read from the gateway's log, SIPp's own checks and the fake model."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import ssl
import sys
from hashlib import md5
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.agent import EmbeddedRealtimeServer, chime
from gateway.media.g711 import PCMA
from tests.audio import normalized_xcorr

from .event_receiver import SECRET, EventReceiver
from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .rtp_caller import RtpCaller, voice
from .scenarios import caller_ulaw
from .test_control_api import TOKEN, Api, ends, key_events
from .test_features import config as agent_config
from .test_features import sent
from .test_session_timers import at
from .test_sip_tls import (
    header,
    read_message,
    reply_to,
    sdp_offer,
    tls_config,
)
from .tls_certs import Leaf, TestCa
from .trunk_scenarios import (
    answering,
    answering_in,
    answering_our_cancel,
    challenging,
    early_media,
    holding_callee,
    ivr,
    refreshed_by_us,
    refreshing_then_silent,
    refusing,
    ringing_forever,
    too_short_an_interval,
)

pytestmark = pytest.mark.integration

TO, FROM = "+4917612345678", "+4930123456"
ENV: dict[str, str | None] = {"GATEWAY_API_TOKEN": TOKEN, "TRUNK_PASSWORD": "trunk-secret"}


def outbound_config(
    fake: EmbeddedRealtimeServer, trunk_port: int, **outbound: Any
) -> tuple[int, dict[str, Any]]:
    api_port = free_udp_port(also_tcp=True)
    cfg = agent_config(fake)
    cfg["api"] = {"bind": LOOPBACK, "port": api_port, "token_env": "GATEWAY_API_TOKEN"}
    cfg["metrics"] = {"debug_state": True}  # what an ended call left (collected_after)
    cfg["sip"] = {
        "outbound": {
            "trunk": f"{LOOPBACK}:{trunk_port}",
            "caller_ids": [r"\+4930\d{4,8}"],
            "destinations": [r"\+49(15|16|17)\d{7,9}"],
            **outbound,
        }
    }
    return api_port, cfg


async def collected_after(gateway: GatewayProcess) -> int:
    """What a full collection finds unreachable after call.ended (the call's end runs on in
    the same loop step, without waiting): asyncio's closed transports, which refer to
    themselves, and no more."""
    url = f"{gateway.metrics_url}/debug/state?gc=1"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            state = await response.json()
    assert state["calls"] == 0, state
    return int(state["gc_collected"])


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
                routed = await gateway.wait_for("call.routed", timeout=20)
                assert routed["amd"] == "off"  # the default: the agent speaks at the answer
                answered = await gateway.wait_for("call.answered", timeout=20)
                assert answered["call_id"] == body["id"] and answered["direction"] == "outbound"
                async with aiohttp.ClientSession() as session:
                    _, _, view = await Api(api_port, session).request(
                        "GET", f"/v1/calls/{body['id']}"
                    )
                assert (view["direction"], view["state"]) == ("outbound", "answered")
                assert view["callee"] == f"sip:{TO}@127.0.0.1" and view["dialed"] == TO
                ended = await gateway.wait_for("call.ended", timeout=20)
                assert ended["reason"] == "caller_bye" and ended["rtp_out"] > 0
                assert await sipp.wait(timeout=20) == 0, sipp.report()
                # Freed by reference counting: its setup and the INVITE client that calls it
                # back were ~290 objects of cyclic garbage (test_call_teardown.py: inbound).
                assert await collected_after(gateway) < 60
    kinds = [e["type"] for e in sent(fake) if e["type"] != "input_audio_buffer.append"]
    assert "response.create" in kinds  # the agent spoke first: its greeting was asked for
    dialing = gateway.find("call.dialing")
    assert dialing and dialing[0]["call_id"] == body["id"] and dialing[0]["to"] == TO


async def test_the_callee_answers_pcma_of_our_pcmu_pcma_offer(tmp_path: Path) -> None:
    """Our offer names both G.711 codecs (and telephone-event); the callee answers PCMA: we
    send PCMA (payload type 8), the phone hears the greeting's chime, and the gateway
    takes the phone's PCMA."""
    async with EmbeddedRealtimeServer() as fake, RtpCaller(PCMA, 8) as phone:
        maps = ["a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000"]
        offer = "m=audio [0-9]+ RTP/AVP 0 8 101"
        path = answering_in(tmp_path / "pcma.xml", phone.port, "8 101", maps, offer)
        sipp = Sipp.uas(tmp_path / "sipp", scenario=path)
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            cfg["media"] = {"codecs": ["PCMU", "PCMA"]}
            cfg["realtime"]["audio_format"] = "g711"  # opened as PCM16: two codecs offered
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                code, body = await place(api_port, {"to": TO, "from": FROM})
                assert code == 202, body
                answered = await gateway.wait_for("call.answered", timeout=20)
                assert answered["codec"] == "PCMA"
                await phone.wait_until(  # the chime, then 200 ms of silence
                    lambda: (
                        bool(phone.spurts()) and phone.heard[-1].at - phone.spurts()[0][-1].at > 0.2
                    ),
                    20,
                    "the greeting",
                )
                greeting = phone.audio()
                said = voice(1.0, 150.0)
                phone.say(said)
                await phone.wait_until(lambda: not phone.speaking, 20, "the phone's words sent")
                async with aiohttp.ClientSession() as session:
                    api = Api(api_port, session)
                    status, _, _ = await api.request("POST", f"/v1/calls/{body['id']}/hangup")
                    assert status == 202
                assert await sipp.wait(timeout=20) == 0, sipp.report()
                ended = await gateway.wait_for("call.ended", timeout=20)
    assert {h.payload_type for h in phone.heard} == {8}
    chime_peak, _ = normalized_xcorr(chime(8000), greeting)
    print(f"\nPCMA answer: chime correlation {chime_peak:.3f}, rtp_in {ended['rtp_in']}")
    assert chime_peak >= 0.9 and ended["rtp_in"] >= 40  # the phone's second of words
    formats = [e for e in sent(fake) if e["type"] == "session.update"]
    assert "pcm" in str(formats[0]).lower()


async def test_amd_asked_for_screens_the_answer_before_the_agent_speaks(tmp_path: Path) -> None:
    """`amd` in the request reaches the call (Selection.amd): a callee who says nothing is
    screened (call.amd), and only then is the agent's first answer asked for."""
    async with EmbeddedRealtimeServer() as fake:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=answering(tmp_path / "a.xml", talk_ms=8000))
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                status, body = await place(api_port, {"to": TO, "from": FROM, "amd": "detect"})
                assert status == 202, body
                routed = await gateway.wait_for("call.routed", timeout=20)
                assert routed["amd"] == "detect"
                await gateway.wait_for("call.answered", timeout=20)
                assert not [e for e in sent(fake) if e["type"] == "response.create"]
                decided = await gateway.wait_for("call.amd", timeout=10)
                assert decided["mode"] == "detect" and decided["result"] in ("human", "unknown")
                await gateway.wait_for("call.ended", timeout=20)
                assert await sipp.wait(timeout=20) == 0, sipp.report()
    kinds = [e["type"] for e in sent(fake) if e["type"] != "input_audio_buffer.append"]
    assert "response.create" in kinds  # after the decision


def with_events(cfg: dict[str, Any], url: str, root: Path) -> dict[str, Any]:
    cfg["hooks"] = {
        "events": {
            "url": url,
            "secret_env": "EVENTS_SECRET",
            "outbox_dir": str(root / "outbox"),
            "retry_max_s": 0.5,
        }
    }
    cfg["records"] = {"calls_dir": str(root / "calls")}
    return cfg


@pytest.mark.parametrize(
    ("answer", "reason"),
    [("486 Busy Here", "busy"), ("480 Temporarily Unavailable", "no_answer"),
     ("404 Not Found", "rejected")],
)  # fmt: skip
async def test_a_refusal_is_reported_as_call_failed_with_its_status(
    tmp_path: Path, answer: str, reason: str
) -> None:
    status = int(answer.split()[0])
    async with EmbeddedRealtimeServer() as fake, EventReceiver() as receiver:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=refusing(tmp_path / "refuse.xml", answer))
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            cfg = with_events(cfg, receiver.url, tmp_path)
            env = {**ENV, "EVENTS_SECRET": SECRET}
            async with GatewayProcess(tmp_path, cfg, env=env) as gateway:
                code, body = await place(api_port, {"to": TO, "from": FROM, "metadata": {"n": 7}})
                assert code == 202, body
                failed = await gateway.wait_for("call.failed", timeout=20)
                assert (failed["reason"], failed["status"]) == (reason, status)
                await receiver.wait_until(
                    lambda r: "call.ended" in types_of(r), timeout=20, what="call.ended"
                )
                # SIPp checked that our ACK of its final answer came (it waits for it).
                assert await sipp.wait(timeout=20) == 0, sipp.report()
    events = receiver.delivered
    assert [e["type"] for e in events] == ["call.started", "call.failed", "call.ended"]
    assert {e["call_id"] for e in events} == {body["id"]}
    assert events[0]["data"]["direction"] == "outbound"
    assert events[1]["data"]["status"] == status and events[1]["data"]["reason"] == reason
    assert events[1]["data"]["metadata"] == {"n": 7}
    record = events[2]["data"]["record"]
    assert record["sip_status"] == status and record["direction"] == "outbound"
    assert record["callee"] == TO and record["caller"] == FROM and record["end_reason"] == reason


def types_of(receiver: EventReceiver) -> list[str]:
    return [e["type"] for e in receiver.delivered]


@pytest.mark.parametrize("silent_ms", [0, 2500])
async def test_no_answer_within_the_ring_timeout_is_cancelled(
    tmp_path: Path, silent_ms: int
) -> None:
    """With `silent_ms`, the callee says nothing (not even 100) until after the ring timeout:
    the CANCEL waits for its 180 (RFC 3261 §9.1)."""
    async with EmbeddedRealtimeServer() as fake:
        path = ringing_forever(tmp_path / "ring.xml", silent_ms=silent_ms)
        sipp = Sipp.uas(tmp_path / "sipp", scenario=path)
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                code, body = await place(api_port, {"to": TO, "from": FROM, "ring_timeout_s": 1.5})
                assert code == 202, body
                failed = await gateway.wait_for("call.failed", timeout=20)
                assert failed["reason"] == "no_answer" and failed["status"] == 487
                timed_out = gateway.find("call.ring_timeout")
                assert timed_out and timed_out[0]["after_s"] == 1.5
                # SIPp's scenario needs our CANCEL, then our ACK of its 487, to pass.
                assert await sipp.wait(timeout=20) == 0, sipp.report()
                ended = await gateway.wait_for("call.ended", timeout=10)
                assert ended["reason"] == "no_answer"


async def test_a_2xx_that_crosses_our_cancel_is_acked_and_ended(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=answering_our_cancel(tmp_path / "x.xml"))
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                code, body = await place(api_port, {"to": TO, "from": FROM, "ring_timeout_s": 1.0})
                assert code == 202, body
                failed = await gateway.wait_for("call.failed", timeout=20)
                assert failed["reason"] == "no_answer" and "after our CANCEL" in failed["detail"]
                # SIPp's scenario needs our ACK of its 200, then our BYE, to pass.
                assert await sipp.wait(timeout=20) == 0, sipp.report()
                ended = await gateway.wait_for("call.ended", timeout=10)
                assert ended["reason"] == "no_answer"
    assert not gateway.find("call.answered")


async def test_early_media_starts_the_stream_before_the_answer(tmp_path: Path) -> None:
    audio = caller_ulaw(tmp_path / "announcement.ulaw", seconds=1.0)
    async with EmbeddedRealtimeServer() as fake:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=early_media(tmp_path / "early.xml", audio))
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                code, body = await place(api_port, {"to": TO, "from": FROM})
                assert code == 202, body
                progress = await gateway.wait_for("call.progress", timeout=20)
                assert progress["status"] == 183 and progress["early_media"] is True
                await gateway.wait_for("call.answered", timeout=20)
                ended = await gateway.wait_for("call.ended", timeout=20)
                assert ended["reason"] == "caller_bye"
                assert await sipp.wait(timeout=20) == 0, sipp.report()
    stats = gateway.find("rtp.stats")[0]
    # The announcement (1 s, 50 packets) came while it rang: heard on the early stream.
    assert stats["packets_in"] >= 40, stats


async def test_a_407_challenge_is_answered_with_proxy_authorization(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=challenging(tmp_path / "auth.xml"))
        async with sipp:
            api_port, cfg = outbound_config(
                fake,
                sipp.sip_port or 0,
                auth={"username": "gateway", "password_env": "TRUNK_PASSWORD"},
            )
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                code, body = await place(api_port, {"to": TO, "from": FROM})
                assert code == 202, body
                await gateway.wait_for("call.answered", timeout=20)
                await gateway.wait_for("call.ended", timeout=20)
                assert await sipp.wait(timeout=20) == 0, sipp.report()
    assert "trunk-secret" not in gateway.log_path.read_text()
    found = re.search(
        r'Proxy-Authorization: Digest username="gateway", realm="trunk.test", '
        r'nonce="a9b8c7d6e5f4", uri="([^"]+)", algorithm=MD5, response="([0-9a-f]{32})"',
        sipp.messages_path.read_text(),
    )
    assert found is not None
    ha1 = md5(b"gateway:trunk.test:trunk-secret").hexdigest()
    ha2 = md5(f"INVITE:{found[1]}".encode()).hexdigest()
    assert found[2] == md5(f"{ha1}:a9b8c7d6e5f4:{ha2}".encode()).hexdigest()


async def test_what_the_guard_refuses_never_reaches_the_trunk(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=answering(tmp_path / "answer.xml"))
        async with sipp:
            api_port, cfg = outbound_config(
                fake, sipp.sip_port or 0, max_concurrent=1, max_per_minute=2
            )
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                for body, status, reason in [
                    ({"to": "+4919000123456", "from": FROM}, 403, "destination_not_allowed"),
                    ({"to": TO + "0000", "from": FROM}, 403, "destination_not_allowed"),
                    ({"to": TO, "from": "+4989123456"}, 403, "caller_id_not_allowed"),
                    ({"to": TO}, 400, "bad_caller_id"),
                    ({"to": TO, "from": FROM, "profile": "nope"}, 400, "unknown_profile"),
                ]:
                    code, problem = await place(api_port, body)
                    assert (code, problem.get("reason")) == (status, reason), (body, problem)
                for bad in [
                    {"to": "sip:+49176@evil.example", "from": FROM},
                    {"to": TO + "\r\nX-Evil: 1", "from": FROM},
                    {"to": TO, "from": FROM, "amd": "maybe"},
                    {"to": TO, "from": FROM, "ring_timeout_s": 0},
                ]:
                    code, problem = await place(api_port, bad)
                    assert code == 400 and problem["errors"], (bad, problem)
                assert gateway.find("call.dialing") == []
                code, first = await place(api_port, {"to": TO, "from": FROM})
                assert code == 202 and first["id"]
                code, problem = await place(api_port, {"to": TO, "from": FROM})
                assert (code, problem["reason"]) == (429, "max_concurrent")
                assert await sipp.wait(timeout=20) == 0, sipp.report()
                await gateway.wait_for("call.ended", timeout=20)
    refusals = [e["reason"] for e in gateway.find("call.outbound_refused")]
    assert refusals.count("destination_not_allowed") == 2 and "max_concurrent" in refusals
    assert len(gateway.find("call.dialing")) == 1


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "call", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_the_cli_asks_the_running_gateway(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=refusing(tmp_path / "busy.xml", "486 Busy"))
        async with sipp:
            _, cfg = outbound_config(fake, sipp.sip_port or 0)
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                config = str(gateway.config_path)
                code, out = await cli(TO, "--from", FROM, "--config", config, env={})
                assert code == 2 and "GATEWAY_API_TOKEN" in out  # says which variable
                code, out = await cli(TO, "--from", FROM, "--config", config, env=ENV)
                assert code == 0 and "placed" in out, out
                failed = await gateway.wait_for("call.failed", timeout=20)
                assert failed["reason"] == "busy" and out.split()[1] == failed["call_id"]
                code, out = await cli("+4919000000000", "--from", FROM, "--config", config, env=ENV)
                assert code == 1 and "403" in out and "destinations" in out
                assert await sipp.wait(timeout=20) == 0, sipp.report()
    off = tmp_path / "off.yaml"
    off.write_text("realtime: {url: 'embedded:echo'}\n")
    code, out = await cli(TO, "--config", str(off), env={})
    assert code == 2 and "api:" in out  # tells how to turn the API on


@pytest.mark.parametrize("way", ["rfc4733", "sip_info"])
async def test_the_agent_walks_an_ivr_with_send_dtmf(tmp_path: Path, way: str) -> None:
    """The callee (an IVR) speaks; the model answers by pressing 1 then # (send_dtmf): as
    RFC 4733 events when the IVR's SDP has telephone-event, else as SIP INFO."""
    keys = '{"digits": "1#"}'
    fake = EmbeddedRealtimeServer(function_calls=[("send_dtmf", keys)])
    async with fake, RtpCaller() as phone:
        info_keys = "1#" if way == "sip_info" else None
        path = ivr(tmp_path / "ivr.xml", phone.port, info_keys=info_keys)
        sipp = Sipp.uas(tmp_path / "sipp", scenario=path)
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            cfg["agent"]["tools"] = [{"type": "send_dtmf", "max_digits": 8}]
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                code, body = await place(api_port, {"to": TO, "from": FROM})
                assert code == 202, body
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 150.0))  # "press 1 for sales, then hash"
                sent_keys = await gateway.wait_for("call.keys_sent", timeout=20)
                assert sent_keys["via"] == way and sent_keys["keys"] == 2
                if way == "rfc4733":
                    await phone.wait_until(lambda: len(ends(phone)) >= 6, 10, "two whole keys")
                    assert [code for code, _ in key_events(phone)] == [1, 11]
                async with aiohttp.ClientSession() as session:
                    api = Api(api_port, session)
                    status, _, _ = await api.request("POST", f"/v1/calls/{body['id']}/hangup")
                    assert status == 202
                # SIPp checked the INFO keys (or none came), then got our BYE.
                assert await sipp.wait(timeout=20) == 0, sipp.report()
    tool = gateway.find("call.tool")
    assert tool and tool[0]["name"] == "send_dtmf" and '"ok": true' in tool[0]["output"]
    if way == "sip_info":
        assert not [h for h in phone.heard if h.payload_type == 101]


async def test_a_hang_up_while_it_rings_cancels_it(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=ringing_forever(tmp_path / "ring.xml"))
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                code, body = await place(api_port, {"to": TO, "from": FROM})
                assert code == 202, body
                await gateway.wait_for("call.progress", timeout=20)  # 180: it rings
                async with aiohttp.ClientSession() as session:
                    api = Api(api_port, session)
                    status, _, _ = await api.request("POST", f"/v1/calls/{body['id']}/hangup")
                    assert status == 202
                failed = await gateway.wait_for("call.failed", timeout=20)
                assert failed["reason"] == "api_hangup" and failed["status"] is None
                # SIPp got our CANCEL and the ACK of its 487 (the client outlived the call).
                assert await sipp.wait(timeout=20) == 0, sipp.report()


async def placed(
    tmp_path: Path, scenario: Path, session_timers: dict[str, Any] | None = None
) -> tuple[GatewayProcess, dict[str, Any]]:
    """One call placed to SIPp playing `scenario`, until it ends; the gateway (its log) and
    call.ended. SIPp's own checks must all pass."""
    async with EmbeddedRealtimeServer() as fake:
        sipp = Sipp.uas(tmp_path / "sipp", scenario=scenario)
        async with sipp:
            api_port, cfg = outbound_config(fake, sipp.sip_port or 0)
            if session_timers is not None:
                cfg["sip"]["session_timers"] = session_timers
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                code, body = await place(api_port, {"to": TO, "from": FROM})
                assert code == 202, body
                ended = await gateway.wait_for("call.ended", timeout=30)
                assert await sipp.wait(timeout=20) == 0, sipp.report()
    return gateway, ended


async def test_the_callee_holds_and_resumes_the_call(tmp_path: Path) -> None:
    """The callee's re-INVITEs reach the outbound call's leg as a caller's do: sendonly is
    answered recvonly and our RTP toward it stops (call.hold), sendrecv brings it back."""
    gateway, ended = await placed(tmp_path, holding_callee(tmp_path / "hold.xml"))
    assert ended["reason"] == "caller_bye", ended
    holds = [e["event"] for e in gateway.events if e["event"] in ("call.hold", "call.resume")]
    assert holds == ["call.hold", "call.resume"]
    assert [e["offer"] for e in gateway.find("sip.reinvite")] == [True, True]


async def test_a_placed_call_asks_for_a_session_timer_and_refreshes_it(tmp_path: Path) -> None:
    """RFC 4028 as the UAC: our INVITE says Supported: timer, Session-Expires 4 and Min-SE 2;
    the callee's 422 (Min-SE 6) gets the INVITE again with 6; its 200 names us the refresher,
    so our bodyless UPDATEs (it allows UPDATE) come every 3 s, saying refresher=uac."""
    timers = {"expires_s": 4, "min_se_s": 2}
    gateway, ended = await placed(tmp_path, refreshed_by_us(tmp_path / "timer.xml"), timers)
    [armed] = gateway.find("sip.session_timer")
    sent = gateway.find("sip.refresh_sent")
    assert ended["reason"] == "caller_bye", ended
    assert armed["interval_s"] == 6 and armed["refresher"] == "uac"  # us, the INVITE's UAC
    assert [e["method"] for e in sent] == ["UPDATE", "UPDATE"]
    assert [e["status"] for e in gateway.find("sip.refresh_answered")] == [200, 200]
    gaps = [at(b) - at(a) for a, b in itertools.pairwise([armed, *sent])]
    print(f"\noutbound, refresher us, interval 6 s: refreshes {[round(g, 3) for g in gaps]} apart")
    assert all(2.9 <= gap <= 3.5 for gap in gaps), gaps
    assert not gateway.find("sip.session_expired")


async def test_a_callee_asking_for_a_second_long_session_gets_our_min_se(tmp_path: Path) -> None:
    """Hostile: a 200 naming a 1 s session, us the refresher, would have us refresh twice a
    second; RFC 4028 §5 forbids it below our Min-SE, so the timer runs at 4 s: one UPDATE
    2 s after the answer (SIPp checks it says 4), not two a second."""
    timers = {"expires_s": 8, "min_se_s": 4}
    gateway, ended = await placed(tmp_path, too_short_an_interval(tmp_path / "s.xml"), timers)
    [armed] = gateway.find("sip.session_timer")
    [refresh] = gateway.find("sip.refresh_sent")
    assert ended["reason"] == "caller_bye", ended
    assert armed["interval_s"] == 4 and armed["refresher"] == "uac"
    assert 1.9 <= at(refresh) - at(armed) <= 2.5


async def test_a_callee_that_stops_refreshing_gets_a_bye(tmp_path: Path) -> None:
    """The callee took the refreshes on itself (refresher=uas, 4 s) and sends none: BYE by
    4 - 4/3 s after the answer (RFC 4028 §10), end reason session_timer_expired."""
    timers = {"expires_s": 4, "min_se_s": 2}
    gateway, ended = await placed(tmp_path, refreshing_then_silent(tmp_path / "t.xml"), timers)
    [armed] = gateway.find("sip.session_timer")
    [expired] = gateway.find("sip.session_expired")
    assert armed["interval_s"] == 4 and armed["refresher"] == "uas"  # the callee
    assert ended["reason"] == "session_timer_expired", ended
    waited = at(expired) - at(armed)
    print(f"\noutbound, callee silent, interval 4 s: BYE {waited:.3f} s after the answer")
    assert 2.5 <= waited <= 3.2, waited
    assert not gateway.find("sip.refresh_sent")


async def test_an_outbound_call_over_tcp(tmp_path: Path) -> None:
    """transport: tcp: the gateway's TCP listener opens a connection to the trunk, and the
    INVITE, the ACK, the callee's BYE and its 200 all travel over it."""
    sip_port, media_port = free_udp_port(also_tcp=True), free_port_block(4)
    args = ["-sf", str(answering(tmp_path / "answer.xml")), "-t", "t1", "-mp", media_port]
    args += ["-p", sip_port, "-i", LOOPBACK, "-m", 1]
    sipp = Sipp(tmp_path / "sipp", args, media_port=media_port)  # TCP: its RTP port shows it up
    async with EmbeddedRealtimeServer() as fake, sipp:
        api_port, cfg = outbound_config(fake, sip_port, transport="tcp")
        cfg["sip"]["transports"] = ["udp", "tcp"]
        async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
            code, body = await place(api_port, {"to": TO, "from": FROM})
            assert code == 202, body
            await gateway.wait_for("call.answered", timeout=20)
            ended = await gateway.wait_for("call.ended", timeout=20)
            assert ended["reason"] == "caller_bye"
            assert await sipp.wait(timeout=20) == 0, sipp.report()
    assert "SIP/2.0/TCP" in sipp.messages_path.read_text()  # our Via names the transport


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TestCa, Leaf]:
    ca = TestCa(tmp_path / "pki")
    return ca, ca.issue("gateway", "gateway.test", ips=(LOOPBACK,))


async def test_an_outbound_call_over_tls_checks_the_trunks_name(
    tmp_path: Path, pki: tuple[TestCa, Leaf]
) -> None:
    """transport: tls, the trunk named by host name: looked up without blocking, a connection
    of the TLS listener's own whose certificate is checked against that name (SNI), the
    INVITE with a TLS Via and a transport=tls Contact, the callee's BYE on the connection."""
    ca, server = pki
    trunk_cert = ca.issue("trunk", "localhost", dns=("localhost",))
    listening = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    listening.load_cert_chain(trunk_cert.cert, trunk_cert.key)
    names: list[str | None] = []
    listening.sni_callback = lambda sock, name, context: names.append(name)  # type: ignore[assignment,misc,return-value]
    seen: asyncio.Queue[bytes] = asyncio.Queue()

    async def trunk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            invite = await read_message(reader)
            seen.put_nowait(invite)
            body = sdp_offer(free_udp_port())
            contact = "Contact: <sip:callee@127.0.0.1;transport=tls>"
            ok = reply_to(invite, "200 OK", contact, "Content-Type: application/sdp")
            ok = ok.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode())
            ok += body.encode()
            writer.write(ok)
            seen.put_nowait(await read_message(reader))  # the ACK
            bye = (
                f"BYE {header(invite, 'Contact').strip('<>')} SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-bye1\r\n"
                f"From: {header(invite, 'To')};tag=reg1\r\nTo: {header(invite, 'From')}\r\n"
                f"Call-ID: {header(invite, 'Call-ID')}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            writer.write(bye.encode())
            seen.put_nowait(await read_message(reader))  # its 200
            await reader.read()

    pbx = await asyncio.start_server(trunk, LOOPBACK, 0, ssl=listening)
    pbx_port = pbx.sockets[0].getsockname()[1]
    async with pbx, EmbeddedRealtimeServer() as fake:
        api_port, cfg = outbound_config(fake, pbx_port, transport="tls")
        cfg["sip"]["outbound"]["trunk"] = f"localhost:{pbx_port}"
        cfg["sip"].update(tls_config(server, ca_file=str(ca.pem))["sip"])
        async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
            code, body = await place(api_port, {"to": TO, "from": FROM})
            assert code == 202, body
            async with asyncio.timeout(20):
                invite, ack, bye_ok = [await seen.get() for _ in range(3)]
            assert bye_ok.startswith(b"SIP/2.0 200"), bye_ok
            ended = await gateway.wait_for("call.ended", timeout=20)
    assert names == ["localhost"]  # SNI: the configured name, checked against the certificate
    assert invite.startswith(b"INVITE sip:+4917612345678@localhost SIP/2.0")
    assert header(invite, "Via").startswith("SIP/2.0/TLS ")
    assert header(invite, "Contact").endswith(";transport=tls>")
    assert ack.startswith(b"ACK sip:callee@127.0.0.1;transport=tls SIP/2.0"), ack
    assert bye_ok.startswith(b"SIP/2.0 200"), bye_ok
    assert ended["reason"] == "caller_bye"


async def test_the_gateway_refuses_to_start_without_the_trunk_password(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        auth = {"username": "gateway", "password_env": "TRUNK_PASSWORD"}
        _, cfg = outbound_config(fake, free_udp_port(), auth=auth)
        gateway = GatewayProcess(tmp_path, cfg, env={**ENV, "TRUNK_PASSWORD": None})
        with pytest.raises(AssertionError):  # it exits instead of getting ready
            await gateway.start(timeout=20)
        assert await gateway.wait_exit(timeout=20) != 0
        assert "sip.outbound.auth.password_env" in gateway.tail()


async def test_a_trunk_that_refuses_the_connection_is_unreachable(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        api_port, cfg = outbound_config(fake, free_udp_port(also_tcp=True), transport="tcp")
        cfg["sip"]["transports"] = ["udp", "tcp"]
        async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
            code, body = await place(api_port, {"to": TO, "from": FROM})
            assert code == 202, body
            failed = await gateway.wait_for("call.failed", timeout=20)
            assert (failed["reason"], failed["status"]) == ("unreachable", None)
            assert "cannot connect" in failed["detail"]
            ended = await gateway.wait_for("call.ended", timeout=10)
            assert ended["reason"] == "unreachable"
    assert gateway.find("call.dialing") == []  # no INVITE without a connection
