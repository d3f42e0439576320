"""Telephony features through real SIP (SIPp) and RTP, with the fake Realtime service:
key presses to the model, tools (hang up, webhook), recording and the call record."""

from __future__ import annotations

import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from gateway.agent import EmbeddedRealtimeServer
from tests.audio import normalized_xcorr
from tests.realtime_schema import validate_client_event

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .rtp_caller import RtpCaller, voice
from .scenarios import info_keys_call, sipp_dial

pytestmark = pytest.mark.integration


def config(fake: EmbeddedRealtimeServer, **agent: Any) -> dict[str, Any]:
    return {"realtime": {"url": fake.url, "auth": {"method": "none"}}, "agent": agent}


def sent(fake: EmbeddedRealtimeServer, kind: str | None = None) -> list[dict[str, Any]]:
    """What the gateway sent the service, each event checked against the SDK's models."""
    events = fake.sessions[0].received
    for event in events:
        validate_client_event(event)
    return [e for e in events if kind is None or e["type"] == kind]


async def test_key_presses_reach_the_model_as_text(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        cfg = config(fake, dtmf={"inter_digit_ms": 800})
        async with GatewayProcess(tmp_path, cfg) as gateway:
            async with sipp_dial(tmp_path / "sipp", gateway.port, phone.port, timeout_ms=30_000):
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.press("12#")
                await gateway.wait_for("call.dtmf_to_model", timeout=10)
                phone.press("5")  # then nothing: sent after the inter-digit pause
                await gateway.wait_for(
                    "call.dtmf_to_model", timeout=10, where=lambda e: e["keys"] == "5"
                )
                await gateway.stop()
    texts = [
        e["item"]["content"][0]["text"]
        for e in sent(fake, "conversation.item.create")
        if e["item"]["type"] == "message"
    ]
    assert texts == ["[DTMF 12#]", "[DTMF 5]"]
    assert [e["digit"] for e in gateway.find("call.dtmf")] == ["1", "2", "#", "5"]
    kinds = [e["type"] for e in sent(fake) if e["type"] != "input_audio_buffer.append"]
    first = kinds.index("conversation.item.create")
    assert kinds[first + 1] == "response.create"  # dtmf.respond: the model answers the keys


async def test_a_key_flood_is_bounded_in_length_and_rate(tmp_path: Path) -> None:
    """A caller that sends a key event every 20 ms (RFC 4733, each its own event) and never
    pauses: no entry grows past max_digits, keys beyond the rate are dropped (logged, not
    each one), and the model gets a bounded number of short messages."""
    from gateway.bridge.keypad import KEY_BURST, KEYS_PER_S

    flood = 150  # 3 s of keys at 50 a second
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        cfg = config(fake, dtmf={"inter_digit_ms": 1500, "max_digits": 32})
        async with GatewayProcess(tmp_path, cfg) as gateway:
            async with sipp_dial(tmp_path / "sipp", gateway.port, phone.port, timeout_ms=30_000):
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.tap("1" * flood)
                phone.press("#", ms=200)  # held long enough for the rate to let it through
                await gateway.wait_for(
                    "call.dtmf_to_model", timeout=20, where=lambda e: e["keys"].endswith("#")
                )
                await gateway.stop()
    entries = [e["keys"] for e in gateway.find("call.dtmf_to_model")]
    accepted = len(gateway.find("call.dtmf"))
    assert all(len(keys) <= 32 for keys in entries), entries
    assert sum(map(len, entries)) == accepted
    # 3.2 s of keys: the burst, then the rate (and a little slack for the network's jitter).
    assert KEY_BURST <= accepted <= KEY_BURST + KEYS_PER_S * 3.2 + 3
    dropped = gateway.find("call.dtmf_dropped")
    assert dropped and dropped[0]["dropped"] == 1 and len(dropped) <= 2
    texts = [
        e["item"]["content"][0]["text"]
        for e in sent(fake, "conversation.item.create")
        if e["item"]["type"] == "message"
    ]
    assert texts == [f"[DTMF {keys}]" for keys in entries]
    assert len(sent(fake, "response.create")) <= len(entries)


async def test_end_call_hangs_up_after_the_last_words(tmp_path: Path) -> None:
    fake = EmbeddedRealtimeServer(function_calls=[("end_call", "{}")])
    async with fake, RtpCaller() as phone:
        async with GatewayProcess(tmp_path, config(fake, tools=[{"type": "end_call"}])) as gateway:
            sipp = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, timeout_ms=30_000)
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 150.0))
                ended = await gateway.wait_for("call.ended", timeout=20)
                assert await sipp.wait(15) == 0, sipp.report()  # it got our BYE and said 200
    assert ended["reason"] == "agent_hangup"
    [output] = sent(fake, "conversation.item.create")
    assert output["item"]["type"] == "function_call_output"
    assert json.loads(output["item"]["output"])["ok"] is True
    assert not sent(fake, "response.create")  # no words after the goodbye


class Crm:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def order(self, request: web.Request) -> web.Response:
        self.requests.append(await request.json())
        return web.json_response({"status": "shipped", "eta": "tomorrow"})


@pytest.fixture
async def crm() -> AsyncIterator[tuple[Crm, str]]:
    service = Crm()
    app = web.Application()
    app.add_routes([web.post("/order", service.order)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield service, f"http://127.0.0.1:{port}/order"
    await runner.cleanup()


async def test_webhook_result_goes_back_and_the_call_is_recorded(tmp_path: Path, crm) -> None:
    service, url = crm
    tool = {
        "type": "webhook",
        "name": "lookup_order",
        "description": "Look up an order.",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
        "url": url,
        "allow_private_addresses": True,  # the service is on loopback
    }
    fake = EmbeddedRealtimeServer(function_calls=[("lookup_order", '{"order": "A-17"}')])
    records = {"recordings_dir": str(tmp_path / "rec"), "calls_dir": str(tmp_path / "calls")}
    caller_voice = voice(1.0, 150.0)
    async with fake, RtpCaller() as phone:
        cfg = {**config(fake, tools=[tool], recording=True), "records": records}
        async with GatewayProcess(tmp_path, cfg) as gateway:
            headers = {"X-Account": "A-42", "Subject": "not passed on"}
            sipp = sipp_dial(
                tmp_path / "sipp", gateway.port, phone.port, hang_up_after_ms=6000, headers=headers
            )
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(caller_voice)
                await gateway.wait_for("call.tool", timeout=15)
                # The model speaks about the result: the echo agent answers response.create.
                await phone.wait_until(lambda: phone.sound_packets > 10, 15, "the answer")
                assert await sipp.wait(20) == 0, sipp.report()
            ended = await gateway.wait_for("call.ended", timeout=15)

    assert service.requests[0]["arguments"] == {"order": "A-17"}
    call_data = service.requests[0]["call"]
    assert call_data["dialed"] == "agent" and call_data["headers"] == {"x-account": "A-42"}
    assert call_data["variables"] == {} and call_data["metadata"] == {}  # no decision webhook
    outputs = [e for e in sent(fake, "conversation.item.create")]
    assert json.loads(outputs[0]["item"]["output"]) == {"status": "shipped", "eta": "tomorrow"}
    kinds = [e["type"] for e in sent(fake) if e["type"] != "input_audio_buffer.append"]
    assert kinds[kinds.index("conversation.item.create") + 1] == "response.create"

    [record_file] = (tmp_path / "calls").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["call_id"] == ended["call_id"] and record["end_reason"] == "caller_bye"
    assert record["profile"] == "default" and record["codec"] == "PCMU"
    assert record["tool_calls"][0]["name"] == "lookup_order"
    assert record["usage"]["total_tokens"] > 0
    assert 5.0 < record["duration_s"] < 10.0

    with wave.open(record["recording"], "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    assert abs(len(stereo) / 8000 - record["duration_s"]) < 0.5
    caller, agent = stereo[:, 0], stereo[:, 1]
    peak, _ = normalized_xcorr(caller_voice, caller)
    assert peak >= 0.8, f"the caller's channel does not hold the caller's voice ({peak:.2f})"
    heard = phone.audio()
    agent_sound = agent[np.abs(agent) > 100]
    assert len(agent_sound) > 0.2 * 8000  # the agent's answer is on its channel
    assert normalized_xcorr(agent[: len(heard)], heard)[0] >= 0.8  # as the phone heard it


@pytest.mark.parametrize("outcome", ["200 OK", "486 Busy Here"])
async def test_transfer_with_refer(tmp_path: Path, outcome: str) -> None:
    """The model transfers the caller: REFER to the configured target; on a 2xx NOTIFY the
    gateway leaves the call; on a failure the model hears why and the call goes on."""
    tool = {"type": "transfer_call", "targets": {"sales": "sip:600@pbx.example"}}
    fake = EmbeddedRealtimeServer(function_calls=[("transfer_call", '{"destination": "sales"}')])
    async with fake, RtpCaller() as phone:
        context = {"headers": {"X-Call-Summary": "${caller} called\r\nX-Evil: 1"}}
        async with GatewayProcess(
            tmp_path, config(fake, tools=[tool], transfer=context)
        ) as gateway:
            sipp = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, transfer_outcome=outcome)
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 150.0))
                ended = await gateway.wait_for("call.ended", timeout=30)
                assert await sipp.wait(15) == 0, sipp.report()
    refer = sipp.messages_path.read_text()
    assert "REFER sip:" in refer and "Refer-To: <sip:600@pbx.example>" in refer
    [summary] = [line for line in refer.splitlines() if line.startswith("X-Call-Summary:")]
    assert summary.endswith(" called X-Evil: 1")  # the context, on one line
    [output] = sent(fake, "conversation.item.create")
    result = json.loads(output["item"]["output"])
    [transfer] = gateway.find("call.transfer")
    assert transfer["mode"] == "blind"
    assert transfer["outcome"] == ("joined_by_refer" if outcome.startswith("2") else "failed")
    if outcome.startswith("2"):
        assert ended["reason"] == "transferred" and transfer["ok"] is True
        assert result["ok"] is True
    else:
        assert ended["reason"] == "caller_bye" and transfer["ok"] is False
        assert "486 Busy Here" in result["error"] and "still here" in result["error"]
        assert sent(fake, "response.create")  # the model tells the caller


async def test_key_presses_sent_as_sip_info(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        cfg = config(fake, dtmf={"inter_digit_ms": 0})
        async with GatewayProcess(tmp_path, cfg) as gateway:
            scenario = info_keys_call(
                tmp_path / "info.xml",
                [("application/dtmf-relay", "Signal=7\nDuration=160"), ("application/dtmf", "#")],
            )
            sipp = Sipp(
                tmp_path,
                ["-sf", scenario, "-key", "rtp_port", phone.port, "-m", 1, "-i", LOOPBACK,
                 "-p", free_udp_port(), "-mp", free_port_block(4), "-s", "agent",
                 f"{LOOPBACK}:{gateway.port}"],
            )  # fmt: skip
            async with sipp:
                assert await sipp.wait(30) == 0, sipp.report()
            await gateway.wait_for("call.ended", timeout=15)
    assert [(e["digit"], e["source"]) for e in gateway.find("call.dtmf")] == [
        ("7", "info"),
        ("#", "info"),
    ]
    texts = [e["item"]["content"][0]["text"] for e in sent(fake, "conversation.item.create")]
    assert texts == ["[DTMF 7]", "[DTMF #]"]
