"""A call's timeline (``<call_id>.timeline.svg`` beside its record, its marks inside) against what
really happened on the call: the real gateway process, SIPp for the signalling, a Python phone
on a loopback socket that notes when each packet arrived, the fake Realtime service here.

The phone's arrival times and the gateway's marks share one clock (CLOCK_MONOTONIC is the
machine's, not the process's): the file's ``origin_monotonic_s`` puts them side by side.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.agent import EmbeddedRealtimeServer
from gateway.bridge.call import CallBridge
from gateway.bridge.timeline_svg import marks

from .gateway_proc import GatewayProcess
from .peers import missing_peer_tools
from .rtp_caller import RtpCaller, voice
from .scenarios import sipp_dial
from .test_barge_in import BURST, client_events, gateway_config, long_answer
from .test_call_teardown import answered_call, records_config
from .test_control_api import TOKEN, Api, api_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_peer_tools("sipp")), reason="needs sipp"),
]

SVG = "{http://www.w3.org/2000/svg}"
WIRE_S = 0.05  # loopback, and this process's loop busy with the fake as well as the phone


def read_timeline(calls: Path) -> tuple[dict[str, Any], dict[str, Any], ET.Element]:
    """(the record, the timeline, the parsed picture) of the one call in `calls`."""
    [record_path] = calls.glob("*.json")  # the record alone
    record = json.loads(record_path.read_text())
    stem = record["call_id"]
    assert record_path.name == f"{stem}.json"
    picture = (calls / f"{stem}.timeline.svg").read_text()
    timeline = marks(picture)
    svg = ET.fromstring(picture)
    assert timeline["call_id"] == stem
    return record, timeline, svg


def entries(timeline: dict[str, Any], lane: str) -> list[dict[str, Any]]:
    return timeline["lanes"][lane]["entries"]


async def test_a_barge_in_call_shows_what_the_phone_heard_and_the_cut(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = EmbeddedRealtimeServer(answer=long_answer(), burst_speed=BURST)
    async with fake, RtpCaller() as phone:
        config = {**gateway_config(fake), "records": {"calls_dir": str(calls)}}
        async with (
            GatewayProcess(tmp_path, config) as gateway,
            sipp_dial(tmp_path / "sipp", gateway.port, phone.port) as sipp,
        ):
            await phone.wait_until(lambda: bool(phone.heard), 15, "the gateway's first packet")
            phone.say(voice(1.0, 120.0))  # a question
            await phone.wait_until(lambda: phone.sound_packets >= 40, 20, "0.8 s of the answer")
            phone.say(voice(1.5, 120.0))  # talk over the answer
            await phone.wait_until(lambda: len(phone.spurts()) >= 2, 20, "the second answer")
            await phone.wait_until(lambda: not phone.speaking, 10, "the caller's last words")
            phone.press("5")
            await gateway.wait_for("call.dtmf", timeout=10)
            await gateway.stop()
            assert await sipp.wait(15) == 0, sipp.report()

    record, timeline, svg = read_timeline(calls)
    origin = timeline["origin_monotonic_s"]
    spurts = phone.spurts()
    agent = entries(timeline, "agent_audio")
    caller = entries(timeline, "caller_speech")
    print(f"\ntimeline: agent {agent}\ncaller {caller}\nturns {timeline['turns']}")

    # The agent's audio as sent: its first stretch starts and ends as the phone heard it.
    first_heard, last_heard = spurts[0][0].at - origin, spurts[0][-1].at - origin
    assert abs(agent[0]["start"] - first_heard) <= WIRE_S
    assert abs(agent[0]["end"] - (last_heard + 0.02)) <= WIRE_S
    assert abs(agent[1]["start"] - (spurts[1][0].at - origin)) <= WIRE_S

    # The caller's speech: the two utterances, as long as the phone spoke them.
    assert len(caller) == 2
    for span, sent_at, seconds in zip(caller, phone.speech_sent_at, (1.0, 1.5), strict=True):
        assert abs(span["start"] - (sent_at - origin)) <= WIRE_S + 0.02
        assert abs((span["end"] - span["start"]) - seconds) <= 0.1

    # The cut: one truncate, at the ms the service was told and the log says.
    [truncate] = client_events(fake, "conversation.item.truncate")
    [barge_in] = gateway.find("call.barge_in")
    cuts = [e for e in entries(timeline, "barge_ins") if e["kind"] == "truncate"]
    assert [c["heard_ms"] for c in cuts] == [truncate["audio_end_ms"]] == [barge_in["heard_ms"]]
    [held] = [e for e in entries(timeline, "barge_ins") if e["kind"] == "local_hold"]
    assert caller[1]["start"] < held["at"] < cuts[0]["at"]
    assert caller[1]["start"] < cuts[0]["at"] <= agent[0]["end"] + WIRE_S
    assert abs(truncate["audio_end_ms"] / 1000 - (agent[0]["end"] - agent[0]["start"])) <= 0.04

    # The service's VAD heard both utterances; the key the phone pressed is in its lane.
    vad = entries(timeline, "service_vad")
    assert len(vad) == 2 and vad[0]["start"] >= caller[0]["start"]
    assert [(k["digit"], k["direction"]) for k in entries(timeline, "dtmf")] == [("5", "in")]
    assert entries(timeline, "dtmf")[0]["at"] > caller[1]["end"]

    # Two turns, each from the end of the caller's words to the agent's next audio, as the
    # phone saw them: the question, and the words that cut the first answer off.
    turns = timeline["turns"]
    assert len(turns) == 2
    for turn, said_at, seconds, spurt, sent in zip(
        turns, phone.speech_sent_at, (1.0, 1.5), spurts, agent, strict=False
    ):
        phone_ms = (spurt[0].at - (said_at + seconds)) * 1000
        assert abs(turn["response_ms"] - phone_ms) <= WIRE_S * 1000 + 20
        assert abs(turn["agent_start"] - sent["start"]) < 0.001
    assert timeline["duration_s"] == pytest.approx(record["duration_s"], abs=0.5)

    # The picture: each lane with its marks, the response time written, the cut's ms.
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "response"]
    assert labels == [f"{turn['response_ms']} ms" for turn in turns]
    lanes = {g.get("data-lane"): g for g in svg.iter(f"{SVG}g") if g.get("class") == "lane"}
    assert len(lanes["agent_audio"].findall(f"{SVG}rect[@class='span']")) == len(agent)
    # local barge-in (the default) held the answer first, then the service's cut
    hold, mark = lanes["barge_ins"].findall(f"{SVG}g[@class='mark']")
    assert "local hold" in hold.find(f"{SVG}title").text
    assert f"{truncate['audio_end_ms']} ms" in mark.find(f"{SVG}title").text
    [key] = lanes["dtmf"].findall(f"{SVG}g[@class='mark']")
    assert key.find(f"{SVG}text").text == "5"


@pytest.mark.parametrize("refused", [False, True])
async def test_a_dropped_service_is_marked_and_a_call_it_ends_keeps_its_timeline(
    tmp_path: Path, refused: bool
) -> None:
    """The service drops the WebSocket (1011) mid-answer: the link reconnects (a mark in the
    session lane) and the caller hangs up later, or the reconnect is refused and the call
    ends there; either way the timeline is written beside the record."""
    calls = tmp_path / "calls"
    bye_ms = None if refused else 6000  # refused: the gateway hangs up (BYE)
    fake = EmbeddedRealtimeServer(answer=long_answer(), burst_speed=BURST)
    async with fake, RtpCaller() as phone:
        config = {**gateway_config(fake), "records": {"calls_dir": str(calls)}}
        async with (
            GatewayProcess(tmp_path, config) as gateway,
            sipp_dial(tmp_path / "sipp", gateway.port, phone.port, hang_up_after_ms=bye_ms) as sipp,
        ):
            await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
            phone.say(voice(1.0, 120.0))
            await phone.wait_until(lambda: phone.sound_packets > 50, 20, "a second of answer")
            if refused:
                fake.refuse_status = 503
            await fake.sessions[0].drop(1011)
            ended = await gateway.wait_for("call.ended", timeout=30)
            assert await sipp.wait(15) == 0, sipp.report()
    record, timeline, svg = read_timeline(calls)
    expected = "realtime_closed:1011" if refused else "caller_bye"
    assert ended["reason"] == record["end_reason"] == expected
    kinds = [m["kind"] for m in entries(timeline, "session")]
    assert kinds == (["reconnect_failed"] if refused else ["reconnect"])
    agent = entries(timeline, "agent_audio")
    assert agent and entries(timeline, "session")[0]["at"] >= agent[0]["start"]
    # The answer cut off by the drop ends in the picture no later than the call.
    assert all(span["end"] <= timeline["duration_s"] + 0.001 for span in agent)
    [mark] = [
        g.find(f"{SVG}title").text
        for g in svg.iter(f"{SVG}g")
        if g.get("class") == "mark" and "reconnect" in g.find(f"{SVG}title").text
    ]
    assert mark.startswith(kinds[0])


async def test_keys_the_control_api_sends_are_marked_when_they_reach_the_wire(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls"
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        port, cfg = api_config(fake)
        cfg["records"] = {"calls_dir": str(calls)}
        async with (
            GatewayProcess(tmp_path, cfg, env={"GATEWAY_API_TOKEN": TOKEN}) as gateway,
            aiohttp.ClientSession() as session,
            sipp_dial(tmp_path / "sipp", gateway.port, phone.port, timeout_ms=30_000) as sipp,
        ):
            answered = await gateway.wait_for("call.answered", timeout=20)
            await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
            path = f"/v1/calls/{answered['call_id']}/dtmf"
            status, _, _ = await Api(port, session).request("POST", path, {"digits": "1#"})
            assert status == 202
            await phone.wait_until(
                lambda: sum(h.payload_type == 101 and h.marker for h in phone.heard) >= 2,
                10,
                "two keys",
            )
            await gateway.stop()
            assert await sipp.wait(15) == 0, sipp.report()
    _, timeline, svg = read_timeline(calls)
    firsts = [h.at for h in phone.heard if h.payload_type == 101 and h.marker]
    keys = entries(timeline, "dtmf")
    assert [(k["digit"], k["direction"]) for k in keys] == [("1", "out"), ("#", "out")]
    for key, heard_at in zip(keys, firsts, strict=True):
        assert abs(key["at"] - (heard_at - timeline["origin_monotonic_s"])) <= WIRE_S
    [marks] = [g for g in svg.iter(f"{SVG}g") if g.get("data-lane") == "dtmf"]
    titles = [m.find(f"{SVG}title").text for m in marks.findall(f"{SVG}g[@class='mark']")]
    assert [t.split(" at ")[0] for t in titles] == ["key 1 to the caller", "key # to the caller"]


async def test_a_call_whose_bridge_crashes_still_gets_its_timeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task of the bridge fails (here the writer to the service): the call ends as an
    internal error, its record is written, and its timeline beside it."""

    async def crashing(self: CallBridge) -> None:
        raise RuntimeError("writer crashed")

    monkeypatch.setattr(CallBridge, "_writer", crashing)
    async with answered_call(records_config(tmp_path), "tl-crash") as (gateway, _, _):
        ended = await gateway.wait_for("call.ended", timeout=10)
    assert ended["reason"] == "internal_error:writer"
    record, timeline, svg = read_timeline(tmp_path / "calls_dir")
    assert record["end_reason"] == "internal_error:writer"
    assert 0 <= timeline["duration_s"] < 5
    assert svg.find(f"{SVG}title").text == f"Timeline of call {record['call_id']}"
