"""The call timeline's recorder (sans-I/O, fed by hand with a clock we move) and its SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.bridge.core import RunTool
from gateway.bridge.timeline import (
    AGENT_MERGE_S,
    CALLER_HANGOVER_S,
    LOSS_EVERY_FRAMES,
    Timeline,
    turns,
    write_files,
)
from gateway.bridge.timeline_svg import LANES, marks, render
from gateway.bridge.tools import ToolCall
from gateway.media.g711 import G711, PCMA, PCMU
from gateway.realtime import protocol as rt

SVG = "{http://www.w3.org/2000/svg}"
ORIGIN = 1000.0


class Clock:
    def __init__(self, now: float = ORIGIN) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def loud(codec: G711 = PCMU) -> bytes:
    t = np.arange(160) / 8000
    return codec.encode((3000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16))


def quiet(codec: G711 = PCMU) -> bytes:
    rng = np.random.default_rng(3)
    return codec.encode(rng.normal(0, 30, 160).astype(np.int16))  # about -60 dBFS


def caller(tl: Timeline, start: float, seconds: float, payload: bytes) -> float:
    """Frames every 20 ms from `start` (arrival times); returns the time after the last."""
    n = round(seconds / 0.02)
    for k in range(n):
        tl.caller_frame(payload, start + k * 0.02)
    return start + n * 0.02


def agent(tl: Timeline, clock: Clock, frames: list[bool]) -> None:
    for talking in frames:
        tl.agent_frame(talking)
        clock.now += 0.02


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_caller_speech_spans_follow_the_loud_frames_with_a_hangover(codec: G711) -> None:
    tl = Timeline(ORIGIN, codec)
    t = caller(tl, ORIGIN + 1.0, 1.0, quiet(codec))
    t = caller(tl, t, 0.8, loud(codec))  # speech from 2.0 to 2.8
    t = caller(tl, t, 0.2, quiet(codec))  # a pause shorter than the hangover: one span
    t = caller(tl, t, 0.4, loud(codec))  # 3.0 to 3.4
    t = caller(tl, t, CALLER_HANGOVER_S + 0.1, quiet(codec))
    caller(tl, t, 0.04, loud(codec))  # a click: too short to be speech
    tl.end(t + 1.0)
    data = tl.snapshot("c1")
    [span] = data["lanes"]["caller_speech"]["entries"]
    assert span["start"] == pytest.approx(1.98, abs=0.001)  # the first loud frame's start
    assert span["end"] == pytest.approx(3.38, abs=0.001)  # the last loud frame's arrival


def test_agent_audio_spans_read_the_clock_only_on_edges_and_merge_underruns() -> None:
    clock = Clock(ORIGIN + 0.5)
    reads = 0

    def counting() -> float:
        nonlocal reads
        reads += 1
        return clock.now

    tl = Timeline(ORIGIN, PCMU, clock=counting)
    agent(tl, clock, [False] * 10 + [True] * 20 + [False] * 2 + [True] * 10 + [False] * 20)
    agent(tl, clock, [True] * 5)
    tl.end(clock.now)
    data = tl.snapshot("c1")
    spans = data["lanes"]["agent_audio"]["entries"]
    # 40 ms of underrun (<= AGENT_MERGE_S) is one span; the last runs to the end of the call.
    assert AGENT_MERGE_S >= 0.04
    assert [(s["start"], s["end"]) for s in spans] == [(0.7, 1.34), (1.74, 1.84)]
    frames = 67
    assert reads == 5 + frames // LOSS_EVERY_FRAMES  # edges, and the loss check once a second


def test_turns_measure_from_the_callers_last_speech_to_the_agents_next_audio() -> None:
    caller_spans = [
        {"start": 1.0, "end": 2.0},
        {"start": 2.5, "end": 3.0},  # spoke again before the answer: this end counts
        {"start": 5.0, "end": 6.0},  # the agent answers while the caller still talks: no turn
        {"start": 8.0, "end": 9.0},  # never answered
    ]
    agent_spans = [
        {"start": 0.2, "end": 0.9},  # the greeting: nobody's turn
        {"start": 3.45, "end": 5.2},
        {"start": 5.5, "end": 7.0},
    ]
    assert turns(caller_spans, agent_spans) == [
        {"caller_end": 3.0, "agent_start": 3.45, "response_ms": 450},
    ]


def test_marks_of_the_service_the_core_keys_sessions_and_loss() -> None:
    clock = Clock(ORIGIN)
    lost = 0
    tl = Timeline(ORIGIN, PCMU, lost=lambda: lost, clock=clock)
    tl.server_event(rt.SpeechStarted("item1", 0), ORIGIN + 1.0)
    tl.server_event(rt.SpeechStarted("item1", 0), ORIGIN + 1.1)  # a repeat: same span
    tl.server_event(rt.SpeechStopped("item1", 0), ORIGIN + 2.0)
    tl.server_event(rt.SpeechStopped("item1", 0), ORIGIN + 2.1)  # no span open: nothing
    tl.local_hold(ORIGIN + 2.5)
    tl.commands(
        [rt.CancelResponse(), rt.Truncate("item0", 1234, 0), RunTool(ToolCall("t1", "<x&y>", ""))],
        ORIGIN + 3.0,
    )
    tl.commands([rt.FunctionOutput("t1", "{}")], ORIGIN + 3.5)
    tl.commands([RunTool(ToolCall("t2", "slow", ""))], ORIGIN + 4.0)
    tl.key_in("5", ORIGIN + 4.5)
    clock.now = ORIGIN + 5.0
    tl.key_out("#")
    tl.session_replaced("reconnect")
    lost = 7
    tl.loss_check(ORIGIN + 6.0)
    tl.loss_check(ORIGIN + 7.0)  # nothing new: no mark
    tl.end(ORIGIN + 8.0)
    lanes = tl.snapshot("c1")["lanes"]
    entries = {name: lane["entries"] for name, lane in lanes.items()}
    assert entries["service_vad"] == [{"start": 1.0, "end": 2.0}]
    assert entries["barge_ins"] == [
        {"at": 2.5, "kind": "local_hold"},
        {"at": 3.0, "kind": "truncate", "heard_ms": 1234},
    ]
    assert entries["tools"] == [
        {"start": 3.0, "end": 3.5, "name": "<x&y>"},
        {"start": 4.0, "end": 8.0, "name": "slow", "unfinished": True},
    ]
    assert entries["dtmf"] == [
        {"at": 4.5, "digit": "5", "direction": "in"},
        {"at": 5.0, "digit": "#", "direction": "out"},
    ]
    assert entries["session"] == [{"at": 5.0, "kind": "reconnect"}]
    assert entries["loss"] == [{"at": 6.0, "lost": 7}]


def test_each_lane_is_bounded_and_says_so() -> None:
    tl = Timeline(ORIGIN, PCMU, cap=3)
    for k in range(10):
        tl.key_in("1", ORIGIN + k)
        tl.server_event(rt.SpeechStarted("i", 0), ORIGIN + k)
        tl.server_event(rt.SpeechStopped("i", 0), ORIGIN + k + 0.5)
    tl.end(ORIGIN + 20)
    lanes = tl.snapshot("c1")["lanes"]
    assert len(lanes["dtmf"]["entries"]) == 3 and lanes["dtmf"]["truncated"]
    assert len(lanes["service_vad"]["entries"]) == 3 and lanes["service_vad"]["truncated"]
    assert not lanes["agent_audio"]["truncated"]


def _call(tool_name: str = "lookup") -> dict[str, Any]:
    """A call with every lane used, as its snapshot."""
    clock = Clock(ORIGIN)
    tl = Timeline(ORIGIN, PCMU, lost=lambda: 3, clock=clock)
    t = caller(tl, ORIGIN + 1.0, 1.0, loud())  # the caller asks, 1.0 .. 1.98 (arrivals)
    caller(tl, t, 0.5, quiet())
    clock.now = ORIGIN + 2.5
    agent(tl, clock, [True] * 50 + [False])  # answered 2.5 .. 3.5
    t = caller(tl, ORIGIN + 3.5, 1.0, loud())  # asks again, 3.5 .. 4.48
    caller(tl, t, 0.5, quiet())
    clock.now = ORIGIN + 4.8
    agent(tl, clock, [False] + [True] * 25)  # answered at 4.82, cut off
    tl.commands([rt.Truncate("item2", 500, 0)], clock.now)
    agent(tl, clock, [False] * 10)
    tl.commands([RunTool(ToolCall("t1", tool_name, "{}"))], ORIGIN + 6.0)
    tl.commands([rt.FunctionOutput("t1", "{}")], ORIGIN + 6.4)
    tl.server_event(rt.SpeechStarted("i", 0), ORIGIN + 3.7)
    tl.server_event(rt.SpeechStopped("i", 0), ORIGIN + 4.6)
    tl.key_in("7", ORIGIN + 7.0)
    tl.session_replaced("rollover")
    tl.loss_check(ORIGIN + 8.0)
    tl.end(ORIGIN + 9.0)
    return tl.snapshot("call-1")


def lane_of(root: ET.Element, name: str) -> ET.Element:
    [lane] = [g for g in root.iter(f"{SVG}g") if g.get("data-lane") == name]
    return lane


def test_the_picture_has_every_lane_each_mark_and_the_response_times() -> None:
    data = _call()
    root = ET.fromstring(render(data))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None and "call-1" in root.find(f"{SVG}title").text
    desc = root.find(f"{SVG}desc").text
    assert "2 turns" in desc and "1 barge-ins" in desc
    for name in LANES:  # one group per lane, one shape per entry
        lane = lane_of(root, name)
        shapes = lane.findall(f"{SVG}rect[@class='span']") + lane.findall(f"{SVG}g[@class='mark']")
        shapes += lane.findall(f"{SVG}rect[@class='mark']")
        assert len(shapes) == len(data["lanes"][name]["entries"]), name
    assert len(data["lanes"]["agent_audio"]["entries"]) == 2
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "response"]
    expected = [f"{turn['response_ms']} ms" for turn in data["turns"]]
    assert labels == expected == ["520 ms", "340 ms"]
    # the barge-in mark says what was heard
    [cut] = lane_of(root, "barge_ins").findall(f"{SVG}g[@class='mark']")
    assert "500 ms" in cut.find(f"{SVG}title").text
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks == ["0 s", "2 s", "4 s", "6 s", "8 s"]  # 9 s of call over 600 px


def test_hostile_strings_are_escaped_and_nothing_external_is_referenced() -> None:
    name = '</text><script>alert(1)</script>\x00\x1b&"'
    svg = render(_call(name))
    root = ET.fromstring(svg)  # parses: escaped, and the characters XML cannot carry gone
    assert "<script" not in svg and "\x00" not in svg and "\x1b" not in svg
    assert not list(root.iter(f"{SVG}script"))
    assert "href" not in svg and "url(" not in svg and "<style" not in svg
    assert " id=" not in svg  # several pictures inlined in one page cannot clash
    [span] = lane_of(root, "tools").findall(f"{SVG}rect[@class='span']")
    assert span.find(f"{SVG}title").text.startswith("</text><script>")


def test_a_long_busy_call_stays_small() -> None:
    clock = Clock(ORIGIN)
    tl = Timeline(ORIGIN, PCMU, clock=clock)
    for k in range(5000):  # an hour and more of a key every second, and short answers
        tl.key_in("1", ORIGIN + k)
        agent(tl, clock, [True] * 5 + [False] * 5)
    tl.end(clock.now)
    data = tl.snapshot("long")
    svg = render(data)
    assert data["lanes"]["dtmf"]["truncated"] and data["lanes"]["agent_audio"]["truncated"]
    assert len(svg) < 400_000 and len(json.dumps(data)) < 200_000
    ET.fromstring(svg)


def test_files_are_written_beside_the_record(tmp_path: Path) -> None:
    data = _call()
    write_files(tmp_path, "call-1", data)
    picture = (tmp_path / "call-1.timeline.svg").read_text()
    assert marks(picture) == data  # the marks travel inside the picture
    ET.fromstring(picture)
    assert [p.name for p in tmp_path.iterdir()] == ["call-1.timeline.svg"]


def test_a_transfer_outcome_is_a_mark_in_the_tools_lane() -> None:
    clock = Clock(ORIGIN + 3.0)
    tl = Timeline(ORIGIN, PCMU, clock=clock)
    tl.transfer("warm", "target_busy")
    tl.end(ORIGIN + 4.0)
    data = tl.snapshot("t")
    assert data["lanes"]["tools"]["entries"] == [{"at": 3.0, "kind": "warm: target_busy"}]
    root = ET.fromstring(render(data))
    [mark] = lane_of(root, "tools").findall(f"{SVG}g[@class='mark']")
    assert mark.find(f"{SVG}title").text.startswith("warm: target_busy")
