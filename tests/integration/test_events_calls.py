"""Call events from real calls: the gateway as a process, SIPp for the signalling, a Python
phone on a loopback socket, the fake Realtime service in this process, and a receiver that
checks every signature with the Standard Webhooks library."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from gateway.agent import EmbeddedRealtimeServer

from .event_receiver import SECRET, EventReceiver
from .gateway_proc import GatewayProcess
from .peers import missing_peer_tools
from .rtp_caller import RtpCaller, voice
from .scenarios import sipp_dial

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_peer_tools("sipp")), reason="needs sipp"),
]

ENV: dict[str, str | None] = {"EVENTS_SECRET": SECRET}


def config(fake: EmbeddedRealtimeServer, url: str, root: Path, **agent: Any) -> dict[str, Any]:
    return {
        "realtime": {"url": fake.url, "auth": {"method": "none"}},
        "agent": {"input_transcription": {"model": "whisper-1"}, **agent},
        "records": {
            "calls_dir": str(root / "calls"),
            "transcripts_dir": str(root / "transcripts"),
        },
        "hooks": {
            "events": {
                "url": url,
                "secret_env": "EVENTS_SECRET",
                "outbox_dir": str(root / "outbox"),
                "retry_max_s": 0.5,
            }
        },
    }


def types_of(receiver: EventReceiver) -> list[str]:
    return [e["type"] for e in receiver.delivered]


async def test_a_call_delivers_started_answered_ended_in_order(tmp_path: Path) -> None:
    """call.started, call.answered, call.ended, each signed, all with the gateway's call id;
    call.ended holds the call record as written to calls_dir, and the transcript."""
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        async with EventReceiver() as receiver:
            cfg = config(fake, receiver.url, tmp_path)
            async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
                sipp = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, hang_up_after_ms=5000)
                async with sipp:
                    await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                    phone.say(voice(1.0, 150.0))
                    assert await sipp.wait(20) == 0, sipp.report()
                await receiver.wait_until(lambda r: "call.ended" in types_of(r), 20, "call.ended")
    assert types_of(receiver) == ["call.started", "call.answered", "call.ended"]
    assert [r.status for r in receiver.received] == [200, 200, 200]  # each delivered once
    [call_id] = {e["call_id"] for e in receiver.delivered}
    started, answered, ended = receiver.delivered
    assert started["data"]["dialed"] == "agent" and started["data"]["transport"] == "UDP"
    assert answered["data"]["codec"] == "PCMU"
    [record_file] = (tmp_path / "calls").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["call_id"] == call_id
    assert ended["data"]["record"] == record  # the record as written
    assert ended["data"]["reason"] == record["end_reason"] == "caller_bye"
    [transcript_file] = (tmp_path / "transcripts").glob("*.jsonl")
    lines = [json.loads(line) for line in transcript_file.read_text().splitlines()]
    turns = [line for line in lines if line["type"] == "turn"]
    assert turns, "the call had no turns to carry"
    assert ended["data"]["transcript"] == {"turns": turns, "truncated": False}
    assert not list((tmp_path / "outbox").glob("*.json"))


async def test_a_transfer_and_its_tool_call_are_events(tmp_path: Path) -> None:
    tool = {"type": "transfer_call", "targets": {"sales": "sip:600@pbx.example"}}
    fake = EmbeddedRealtimeServer(function_calls=[("transfer_call", '{"destination": "sales"}')])
    async with fake, RtpCaller() as phone, EventReceiver() as receiver:
        cfg = config(fake, receiver.url, tmp_path, tools=[tool])
        async with GatewayProcess(tmp_path, cfg, env=ENV) as gateway:
            sipp = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, transfer_outcome="200 OK")
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 150.0))
                assert await sipp.wait(30) == 0, sipp.report()
            await receiver.wait_until(lambda r: "call.ended" in types_of(r), 20, "call.ended")
    kinds = types_of(receiver)
    assert kinds[:2] == ["call.started", "call.answered"] and kinds[-1] == "call.ended"
    assert sorted(kinds[2:-1]) == ["call.tool", "call.transferred"]
    by_type = {e["type"]: e["data"] for e in receiver.delivered}
    assert by_type["call.transferred"]["target"] == "sip:600@pbx.example"
    tool_event = by_type["call.tool"]
    assert tool_event["name"] == "transfer_call" and tool_event["ok"] is True
    assert json.loads(tool_event["arguments"]) == {"destination": "sales"}
    assert by_type["call.ended"]["reason"] == "transferred"


@pytest.mark.parametrize("stop", ["sigkill", "sigterm"])
async def test_undelivered_events_survive_the_process_and_go_after_the_restart(
    tmp_path: Path, stop: str
) -> None:
    """The receiver is down. sigkill: the call has ended and its three events are on disk
    when the gateway is killed. sigterm: the gateway is stopped in the middle of the call;
    the drain ends it (drain_timeout_s 0), and its call.ended is on disk before the process
    exits 0. Restarted, the gateway delivers all three, same ids, in order."""
    receiver = EventReceiver()  # its port, nothing listening yet
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        cfg = config(fake, receiver.url, tmp_path)
        first = GatewayProcess(tmp_path, cfg, env=ENV)
        async with first:
            hang_up_ms = 3000 if stop == "sigkill" else None
            sipp = sipp_dial(tmp_path / "sipp", first.port, phone.port, hang_up_after_ms=hang_up_ms)
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                if stop == "sigterm":
                    await first.wait_for("events.attempt_failed", timeout=20)
                    first.send_signal(signal.SIGTERM)
                    assert await first.wait_exit(timeout=20) == 0
                else:
                    assert await sipp.wait(20) == 0, sipp.report()
                    await first.wait_for(  # on disk: written and fsynced
                        "events.queued", timeout=20, where=lambda e: e["type"] == "call.ended"
                    )
                    first.send_signal(signal.SIGKILL)
                    assert await first.wait_exit(timeout=10) == -signal.SIGKILL
        assert first.find("events.attempt_failed")
        on_disk = sorted(p.name for p in (tmp_path / "outbox").glob("*.json"))
        ids = [name.split("_", 1)[1].removesuffix(".json") for name in on_disk]
        assert len(ids) == 3

        (tmp_path / "second").mkdir()
        async with receiver, GatewayProcess(tmp_path / "second", cfg, env=ENV) as second:
            await second.wait_for("events.outbox_loaded", timeout=10)
            await receiver.wait_until(lambda r: len(r.delivered) == 3, 20, "three events")
    assert [e["id"] for e in receiver.delivered] == ids
    assert types_of(receiver) == ["call.started", "call.answered", "call.ended"]
    if stop == "sigterm":
        assert receiver.delivered[2]["data"]["reason"] == "drain_timeout"  # drain_timeout_s: 0


async def test_a_call_refused_during_setup_is_started_then_ended(tmp_path: Path) -> None:
    """The Realtime service refuses the session: the caller gets 503, the receiver gets
    call.started and call.ended, whose record says 503 and no answer."""
    fake = EmbeddedRealtimeServer()
    fake.refuse_status = 503
    async with fake, RtpCaller() as phone, EventReceiver() as receiver:
        async with GatewayProcess(tmp_path, config(fake, receiver.url, tmp_path), env=ENV) as gw:
            sipp = sipp_dial(tmp_path / "sipp", gw.port, phone.port, timeout_ms=10_000)
            async with sipp:
                await sipp.wait(20)  # SIPp fails: its scenario expects a 200
            await receiver.wait_until(lambda r: "call.ended" in types_of(r), 20, "call.ended")
    assert types_of(receiver) == ["call.started", "call.ended"]
    record = receiver.delivered[1]["data"]["record"]
    assert record["sip_status"] == 503 and record["answered_at"] is None
    assert receiver.delivered[1]["data"]["reason"] == "realtime_unavailable"


async def test_an_outbox_it_cannot_use_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a directory")
    async with EmbeddedRealtimeServer() as fake:
        cfg = config(fake, "http://127.0.0.1:9/events", tmp_path)
        cfg["hooks"]["events"]["outbox_dir"] = str(tmp_path / "taken" / "outbox")
        gateway = GatewayProcess(tmp_path, cfg, env=ENV)
        await gateway.start(wait_ready=False)
        assert await gateway.wait_exit(timeout=20) != 0
    assert f"hooks.events.outbox_dir: cannot use {tmp_path / 'taken' / 'outbox'}" in gateway.tail()
    assert not gateway.find("gateway.ready")
