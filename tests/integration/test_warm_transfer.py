"""Warm transfers through real peers: SIPp as the caller's PBX (held by our re-INVITE, then
taking or refusing the REFER with Replaces), baresip or SIPp as the human's phone, the
embedded agent as the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from gateway.agent import EmbeddedRealtimeServer
from tests.audio import normalized_xcorr, read_wav, speech_wav, write_wav
from tests.realtime_schema import validate_client_event

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, free_udp_port
from .rtp_caller import RtpCaller, voice
from .warm_scenarios import BaresipCallee, busy_target, held_caller_sipp, ringing_target

pytestmark = pytest.mark.integration

HOSTILE = "Anna wants a refund\\r\\nX-Evil: injected\\r\\n\\r\\nINVITE sip:evil"


def config(fake: EmbeddedRealtimeServer, target: str, **transfer: Any) -> dict[str, Any]:
    tool = {"type": "transfer_call", "targets": {"sales": target}, "mode": "warm"}
    return {
        "realtime": {"url": fake.url, "auth": {"method": "none"}},
        "agent": {"tools": [tool], "transfer": transfer},
    }


def sent(fake: EmbeddedRealtimeServer, kind: str) -> list[dict[str, Any]]:
    events = fake.sessions[0].received
    for event in events:
        validate_client_event(event)
    return [e for e in events if e["type"] == kind]


async def test_busy_target_caller_comes_off_hold_and_model_is_told(tmp_path: Path) -> None:
    """(iii) The target answers 486: the caller is held (re-INVITE sendonly) then back
    (sendrecv), the model hears why; (iv) the hostile summary reached the target's INVITE on
    one line, User-to-User hex-encoded."""
    arguments = json.dumps({"destination": "sales", "mode": "warm", "summary": "x"})
    arguments = arguments.replace('"x"', f'"{HOSTILE}"')
    fake = EmbeddedRealtimeServer(function_calls=[("transfer_call", arguments)])
    target = busy_target(tmp_path / "target")
    headers = {"X-Call-Summary": "${summary}", "User-to-User": "${summary}"}
    t = np.arange(16000 * 2) / 16000  # music on hold: 1234 Hz at 16 kHz, resampled to 8 kHz
    write_wav(tmp_path / "hold.wav", 16000, (np.sin(2 * np.pi * 1234 * t) * 6000).astype(np.int16))
    async with fake, RtpCaller() as phone, target:
        cfg = config(
            fake, target.uri("600"), headers=headers, music_on_hold=str(tmp_path / "hold.wav")
        )
        async with GatewayProcess(tmp_path, cfg) as gateway:
            sipp = held_caller_sipp(tmp_path / "caller", gateway.port, phone.port, None)
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 150.0))
                event = await gateway.wait_for("call.transfer", timeout=40)
                assert await sipp.wait(30) == 0, sipp.report()
                assert await target.wait(15) == 0, target.report()
                await gateway.wait_for("call.ended", timeout=15)
    assert event["mode"] == "warm" and event["outcome"] == "target_busy"
    assert event["ok"] is False
    outputs = sent(fake, "conversation.item.create")
    [output] = [e for e in outputs if e["item"]["type"] == "function_call_output"]
    result = json.loads(output["item"]["output"])
    assert "busy" in result["error"] and "off hold" in result["error"]
    invite = target.messages_path.read_text()
    summary_lines = [line for line in invite.splitlines() if line.startswith("X-Call-Summary:")]
    one_line = "Anna wants a refund X-Evil: injected INVITE sip:evil"
    assert summary_lines == [f"X-Call-Summary: {one_line}"]
    assert not any(line.startswith("X-Evil") for line in invite.splitlines())
    [uui] = [line for line in invite.splitlines() if line.lower().startswith("user-to-user:")]
    hex_value, param = uui.split(":", 1)[1].strip().split(";")
    assert param == "encoding=hex"
    assert (
        bytes.fromhex(hex_value).decode() == "Anna wants a refund X-Evil: injected INVITE sip:evil"
    )
    caller = sipp.messages_path.read_text()
    ours = [line.split()[2] for line in caller.splitlines() if line.startswith("o=- ")]
    assert ours == ["0", "1", "2"]  # answer, hold (sendonly), resume: o= version moves
    spectrum = np.abs(np.fft.rfft(phone.audio().astype(np.float64)))
    freqs = np.fft.rfftfreq(len(phone.audio()), 1 / 8000)
    near = spectrum[(freqs > 1224) & (freqs < 1244)].max()
    around = np.median(spectrum[(freqs > 1000) & (freqs < 1500)])
    assert near > 20 * around, "the caller heard no music on hold"


def human(tmp_path: Path) -> BaresipCallee:
    """baresip answering as the human: its microphone a low tone for 40 s (so the caller
    hears it once bridged)."""
    samples = voice(40.0, 110.0, dbfs=-30.0)
    write_wav(tmp_path / "human.wav", 8000, samples)
    return BaresipCallee(tmp_path / "human", tmp_path / "human.wav", 5060, max_call_seconds=60)


async def test_warm_transfer_joined_by_refer_with_replaces(tmp_path: Path) -> None:
    """(i) The human (baresip) answers and hears the briefing; the caller's side takes the
    REFER whose Refer-To carries Replaces (SIPp checks it), reports NOTIFY 200; the gateway
    leaves both legs. The REFER and the human's INVITE carry the summary header."""
    arguments = json.dumps({"destination": "sales", "mode": "warm", "summary": "Anna, refund."})
    fake = EmbeddedRealtimeServer(function_calls=[("transfer_call", arguments)])
    callee = human(tmp_path)
    async with fake, RtpCaller() as phone:
        await callee.start()
        try:
            cfg = config(fake, callee.address(), headers={"X-Call-Summary": "${summary}"})
            async with GatewayProcess(tmp_path, cfg) as gateway:
                sipp = held_caller_sipp(tmp_path / "caller", gateway.port, phone.port, "202")
                async with sipp:
                    await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                    phone.say(voice(1.0, 150.0))
                    event = await gateway.wait_for("call.transfer", timeout=60)
                    assert await sipp.wait(30) == 0, sipp.report()
                    ended = await gateway.wait_for("call.ended", timeout=15)
            result = await callee.wait(30)
        finally:
            await callee.stop()
    assert event["mode"] == "warm" and event["outcome"] == "joined_by_refer", event
    assert ended["reason"] == "transferred"
    assert result.established, result.describe()
    refer = sipp.messages_path.read_text()
    assert "X-Call-Summary: Anna, refund." in refer
    assert "Replaces=" in refer
    assert result.received_wav is not None, result.describe()
    _, heard = read_wav(result.received_wav)
    loud = np.abs(heard.astype(np.int32)) > 1000
    assert loud.sum() > 8000 * 0.3, "the human heard no briefing"  # 0.3 s of the agent's voice


async def test_refused_refer_bridges_the_legs(tmp_path: Path) -> None:
    """(ii) The caller's side answers the REFER 405: the gateway relays the legs' audio;
    what the caller says reaches the human (normalised cross-correlation, as the echo
    tests measure), and the caller's BYE ends both legs."""
    arguments = json.dumps({"destination": "sales", "mode": "warm", "summary": "Anna, refund."})
    fake = EmbeddedRealtimeServer(function_calls=[("transfer_call", arguments)])
    said = speech_wav(
        tmp_path / "said.wav", "The parcel never arrived at my house.", 8000, 0.2, 0.2
    )
    callee = human(tmp_path)
    async with fake, RtpCaller() as phone:
        await callee.start()
        try:
            cfg = config(fake, callee.address())
            async with GatewayProcess(tmp_path, cfg) as gateway:
                refusal = "405 Method Not Allowed"
                sipp = held_caller_sipp(tmp_path / "caller", gateway.port, phone.port, refusal)
                async with sipp:
                    await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                    phone.say(voice(1.0, 150.0))
                    event = await gateway.wait_for("call.transfer", timeout=60)
                    phone.say(said)
                    assert await sipp.wait(30) == 0, sipp.report()
                    ended = await gateway.wait_for("call.ended", timeout=15)
            result = await callee.wait(30)
        finally:
            await callee.stop()
    assert event["outcome"] == "bridged" and "405" in event["detail"], event
    assert ended["reason"] == "caller_bye"
    assert result.established and result.received_wav is not None, result.describe()
    _, heard = read_wav(result.received_wav)
    score, _ = normalized_xcorr(said.astype(np.float64), heard.astype(np.float64))
    assert score > 0.9, score


async def test_warm_transfer_asked_by_the_api_to_a_busy_target(tmp_path: Path) -> None:
    """POST /v1/calls/{id}/transfer with mode warm: the caller is held and comes back when
    the target is busy; the API answers 502 with the outcome, the model is told (a system
    message), the call record lists the transfer."""
    from .test_control_api import TOKEN, Api

    fake = EmbeddedRealtimeServer()
    target = busy_target(tmp_path / "target")
    port = free_udp_port(also_tcp=True)
    async with fake, RtpCaller() as phone, target, aiohttp.ClientSession() as session:
        cfg = config(fake, target.uri("600"))
        cfg["api"] = {"bind": LOOPBACK, "port": port, "token_env": "GATEWAY_API_TOKEN"}
        cfg["records"] = {"calls_dir": str(tmp_path / "records")}
        env = {"GATEWAY_API_TOKEN": TOKEN}
        async with GatewayProcess(tmp_path, cfg, env=env) as gateway:
            sipp = held_caller_sipp(tmp_path / "caller", gateway.port, phone.port, None)
            async with sipp:
                answered = await gateway.wait_for("call.answered", timeout=20)
                status, _, body = await Api(port, session).request(
                    "POST",
                    f"/v1/calls/{answered['call_id']}/transfer",
                    {"target": target.uri("600"), "mode": "warm", "summary": "a test"},
                )
                assert await sipp.wait(30) == 0, sipp.report()
                await gateway.wait_for("call.ended", timeout=15)
    assert status == 502 and "target_busy" in body["detail"], body
    texts = [
        e["item"]["content"][0]["text"]
        for e in sent(fake, "conversation.item.create")
        if e["item"]["type"] == "message" and e["item"]["role"] == "system"
    ]
    assert any("did not happen" in text and "busy" in text for text in texts), texts
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    [entry] = record["transfers"]
    assert entry["mode"] == "warm" and entry["outcome"] == "target_busy"


async def test_unanswered_target_is_cancelled_at_the_ring_timeout(tmp_path: Path) -> None:
    """The human's phone rings past agent.transfer.ring_timeout_s: CANCEL (SIPp answers 200
    and 487, takes our ACK), outcome no_answer, the caller comes off hold."""
    arguments = json.dumps({"destination": "sales", "mode": "warm"})
    fake = EmbeddedRealtimeServer(function_calls=[("transfer_call", arguments)])
    target = ringing_target(tmp_path / "target")
    async with fake, RtpCaller() as phone, target:
        cfg = config(fake, target.uri("600"), ring_timeout_s=1.5)
        async with GatewayProcess(tmp_path, cfg) as gateway:
            sipp = held_caller_sipp(tmp_path / "caller", gateway.port, phone.port, None)
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 150.0))
                event = await gateway.wait_for("call.transfer", timeout=40)
                assert await target.wait(15) == 0, target.report()
                assert await sipp.wait(30) == 0, sipp.report()
                await gateway.wait_for("call.ended", timeout=15)
    assert event["outcome"] == "no_answer" and event["ok"] is False, event
    outputs = sent(fake, "conversation.item.create")
    [output] = [e for e in outputs if e["item"]["type"] == "function_call_output"]
    assert "nobody answered" in json.loads(output["item"]["output"])["error"]
