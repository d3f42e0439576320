"""Calls that never end: `limits.max_call_s` and `media.hold_timeout_s` hang up with a BYE,
and the log, the call record and the metric name the reason. Real gateway process, SIPp for
the caller, the fake Realtime service in this process."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway.agent import EmbeddedRealtimeServer
from gateway.bridge.guards import GOODBYE, STILL_THERE, WRAP_UP

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, free_udp_port
from .scenarios import (
    SIP_TESTS,
    call_until_bye,
    in_dialog,
    invite,
    ok_to_request,
    pause,
    recv,
    recv_request,
    run_sipp,
    scenario,
    sdp,
)
from .test_features import sent

pytestmark = SIP_TESTS


def config(fake: EmbeddedRealtimeServer, tmp_path: Path, **sections: Any) -> dict[str, Any]:
    return {
        "realtime": {"url": fake.url, "auth": {"method": "none"}},
        "records": {"calls_dir": str(tmp_path / "calls")},
        **sections,
    }


def end_reason(tmp_path: Path, ended: dict[str, Any]) -> str:
    record = json.loads((tmp_path / "calls" / f"{ended['call_id']}.json").read_text())
    return str(record["end_reason"])


def at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


async def test_a_call_ends_at_max_call_s(tmp_path: Path) -> None:
    """limits.max_call_s 2: the caller, who would stay for ever, gets a BYE after 2 s; with
    wrap_up_s 1 the model was told to finish 1 s before."""
    async with EmbeddedRealtimeServer() as fake:
        cfg = config(fake, tmp_path, limits={"max_call_s": 2, "wrap_up_s": 1})
        async with GatewayProcess(tmp_path, cfg) as gateway:
            forever = call_until_bye(tmp_path / "forever.xml", bye_timeout_s=15)
            await run_sipp(tmp_path, forever, gateway.port, timeout=30, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
            [limit] = gateway.find("call.time_limit")
            guards = gateway.find("call.guard")
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{gateway.metrics_url}/metrics", timeout=aiohttp.ClientTimeout(5)) as r,
            ):
                metrics = await r.text()
    print(f"\nmax_call_s 2: BYE, duration {ended['duration_s']} s")
    assert ended["reason"] == limit["reason"] == "max_call_duration"
    assert 2.0 <= ended["duration_s"] < 3.5, ended
    assert end_reason(tmp_path, ended) == "max_call_duration"
    assert 'sipgw_calls_ended_total{reason="max_call_duration"} 1.0' in metrics
    told = [
        e["item"]["content"][0]["text"]
        for e in sent(fake, "conversation.item.create")
        if e["item"].get("role") == "system"
    ]
    assert told == [WRAP_UP.format(seconds=1)]
    [guard] = guards
    assert guard["kind"] == "wrap_up" and 0.9 <= at(limit) - at(guard) <= 1.5


def held_twice(path: Path, media_port: int, *, first_hold_ms: int) -> Path:
    """A call held (sendonly) for `first_hold_ms`, resumed, held again (inactive), and then
    left on hold until the gateway's BYE."""
    media = {"port": media_port, "ip": LOOPBACK}
    return scenario(
        path,
        invite(sdp(**media)),
        recv(100, optional=True),
        recv(200),
        in_dialog("ACK", 1),
        invite(sdp(**media, direction="sendonly", version=2), branch="h1", cseq=2, in_dialog=True),
        recv(200, body="a=recvonly"),
        in_dialog("ACK", 2),
        pause(first_hold_ms),
        invite(sdp(**media, version=3), branch="resume", cseq=3, in_dialog=True),
        recv(200, body="a=sendrecv"),
        in_dialog("ACK", 3),
        invite(sdp(**media, direction="inactive", version=4), branch="h2", cseq=4, in_dialog=True),
        recv(200, body="a=inactive"),
        in_dialog("ACK", 4),
        recv_request("BYE", timeout_ms=15000),
        ok_to_request(),
    )


async def test_a_hold_longer_than_hold_timeout_s_ends_the_call(tmp_path: Path) -> None:
    """media.hold_timeout_s 2: a 1.5 s hold passes (the resume resets the count); the second
    hold gets a BYE 2 s after it began, not 0.5 s."""
    async with EmbeddedRealtimeServer() as fake:
        cfg = config(fake, tmp_path, media={"hold_timeout_s": 2})
        async with GatewayProcess(tmp_path, cfg) as gateway:
            held = held_twice(tmp_path / "held.xml", free_udp_port(), first_hold_ms=1500)
            await run_sipp(tmp_path, held, gateway.port, timeout=30, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
            holds = gateway.find("call.hold")
            [resume] = gateway.find("call.resume")
            [limit] = gateway.find("call.time_limit")
    print(f"\nhold_timeout_s 2: BYE {at(limit) - at(holds[1]):.3f} s into the second hold")
    assert ended["reason"] == limit["reason"] == "hold_timeout"
    assert end_reason(tmp_path, ended) == "hold_timeout"
    assert len(holds) == 2 and at(holds[0]) < at(resume) < at(holds[1])
    assert at(resume) - at(holds[0]) >= 1.4  # the first hold outlived nothing
    assert 2.0 <= limit["held_s"] < 3.0
    assert 2.0 <= at(limit) - at(holds[1]) < 3.0


async def test_a_silent_caller_is_asked_twice_then_bidden_goodbye_and_hung_up(
    tmp_path: Path,
) -> None:
    """agent.silence_timeout_s 1: a caller who never speaks (SIPp sends no RTP) is asked twice
    whether they are still there, then the agent says goodbye and the gateway sends BYE;
    the service got each as a system message (checked against the SDK's models)."""
    async with EmbeddedRealtimeServer() as fake:
        agent = {"silence_timeout_s": 1, "greeting": None}
        cfg = config(fake, tmp_path, agent=agent, media={"rtp_timeout_s": 0})
        async with GatewayProcess(tmp_path, cfg) as gateway:
            silent = call_until_bye(tmp_path / "silent.xml", bye_timeout_s=15)
            await run_sipp(tmp_path, silent, gateway.port, timeout=30, context=gateway.tail)
            ended = await gateway.wait_for("call.ended", timeout=10)
            guards = gateway.find("call.guard")
    assert ended["reason"] == "silence_timeout"
    assert end_reason(tmp_path, ended) == "silence_timeout"
    assert [g["kind"] for g in guards] == ["prompt", "prompt", "goodbye"]
    # 1 s after the answer, then 1 s after each question was heard: at least 3 s in all
    assert 3.0 <= ended["duration_s"] < 10.0, ended
    told = [
        e["item"]["content"][0]["text"]
        for e in sent(fake, "conversation.item.create")
        if e["item"].get("role") == "system"
    ]
    assert told == [STILL_THERE.format(seconds=1)] * 2 + [GOODBYE]
