"""The console's parts without a server: the hub's fan-out and its bounds, the audio tap,
the history's path checks, the CSRF rules."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.bridge.uplink import CallerAudio
from gateway.config import AgentConfig
from gateway.console import hub as hub_module
from gateway.console.auth import ConsoleAuth, clean_label, cross_site, session_value
from gateway.console.history import History, Search, inside
from gateway.console.hub import MAX_QUEUED, Hub, log_tap
from gateway.console.tap import MAX_LISTENER_FRAMES, CallTap, Listener
from gateway.media.g711 import PCMU


def messages(sub: hub_module.Subscriber) -> list[tuple[str, dict[str, object]]]:
    out = []
    for raw in sub.queue:
        kind, data = raw.decode().strip().split("\n")
        out.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


async def test_events_reach_the_pages_that_follow_their_call_and_cost_nothing_unwatched() -> None:
    hub = Hub()
    posted: list[str] = []
    emit = hub.tee("c1", lambda kind, data: posted.append(kind))
    emit("call.started", {"caller": "+49"})  # no page open: only hooks.events gets it
    assert posted == ["call.started"] and not hub_module._LISTENING
    everything, one, other = hub.subscribe(None), hub.subscribe("c1"), hub.subscribe("c2")
    assert everything and one and other
    emit("call.answered", {"profile": "p"})
    hub.turn("c1", {"role": "caller", "text": "hello"})
    log_tap(None, "info", {"event": "call.barge_in", "call_id": "c1", "heard_ms": 420})
    log_tap(None, "info", {"event": "call.routed", "call_id": "c1"})  # not shown
    assert [m[0] for m in messages(everything)] == ["event", "turn", "log"]
    assert messages(one) == messages(everything)
    assert not other.queue
    assert messages(one)[2][1] == {
        "call_id": "c1",
        "name": "call.barge_in",
        "fields": {"heard_ms": 420},
    }
    for sub in (everything, one, other):
        hub.unsubscribe(sub)
    assert not hub_module._LISTENING and hub._snapshots is None


async def test_a_page_that_does_not_keep_up_is_dropped_not_waited_for() -> None:
    hub = Hub()
    slow = hub.subscribe(None)
    assert slow is not None
    for i in range(MAX_QUEUED):
        hub.turn("c1", {"text": str(i)})
    assert len(slow.queue) == MAX_QUEUED and not slow.dropped
    hub.turn("c1", {"text": "one more"})
    assert slow.dropped and not slow.queue and slow.ready.is_set()
    hub.turn("c1", {"text": "later"})
    assert not slow.queue  # nothing more is kept for it
    dropped: list[int] = []
    hub.on_drop = lambda: dropped.append(1)
    hub.unsubscribe(slow)
    assert hub.dropped == 1 and dropped == [1]


async def test_snapshots_run_only_while_a_page_is_open() -> None:
    hub = Hub()
    asked = asyncio.Event()
    calls = [{"id": "c1", "state": "answered"}, {"id": "c2", "state": "answered"}]

    def source(call_id: str | None) -> list[dict[str, object]]:
        asked.set()
        return [c for c in calls if call_id is None or c["id"] == call_id]

    hub.stats_source = source
    everything, one = hub.subscribe(None), hub.subscribe("c2")
    assert everything and one
    await asyncio.wait_for(asked.wait(), 2)
    await asyncio.wait_for(one.ready.wait(), 2)
    await asyncio.wait_for(everything.ready.wait(), 2)
    assert messages(everything)[0] == ("stats", {"calls": calls})
    assert messages(one)[0] == ("stats", {"calls": [calls[1]]})
    task = hub._snapshots
    hub.close()
    assert task is not None and hub._snapshots is None
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and one.dropped


def test_the_tap_gives_listeners_both_sides_in_step_and_bounds_them() -> None:
    tap = CallTap(160, 8000)
    assert not tap.active
    tap.caller(np.full(160, 1000, dtype=np.int16))  # nobody listens: nothing kept
    listener = Listener("sam")
    tap.listeners.add(listener)
    tap.caller(np.full(100, 1000, dtype=np.int16))
    tap.agent(np.full(160, -2000, dtype=np.int16))
    frame = np.frombuffer(listener.frames[0], dtype="<i2").reshape(-1, 2)
    assert frame.shape == (160, 2)
    assert (frame[:100, 0] == 1000).all() and (frame[100:, 0] == 0).all()
    assert (frame[:, 1] == -2000).all()
    for _ in range(MAX_LISTENER_FRAMES + 10):
        tap.agent(None)
    assert len(listener.frames) == MAX_LISTENER_FRAMES and listener.ready.is_set()
    assert len(listener.take()) == MAX_LISTENER_FRAMES * 160 * 4
    assert not listener.frames and not listener.ready.is_set()


def test_meters_show_the_peak_since_the_last_look() -> None:
    tap = CallTap(160, 8000)
    tap.watchers = 1
    tap.caller(np.array([0, -16384, 100], dtype=np.int16))
    tap.agent(np.array([32767, 0], dtype=np.int16))
    assert tap.levels() == {"caller": 0.5, "agent": 1.0}
    assert tap.levels() == {"caller": 0.0, "agent": 0.0}


def test_only_files_inside_the_folder_are_served(tmp_path: Path) -> None:
    base = tmp_path / "recordings"
    base.mkdir()
    good = base / "a.wav"
    good.write_bytes(b"RIFF")
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"RIFF")
    os.symlink(outside, base / "link.wav")
    assert inside(base, str(good)) == good.resolve()
    for name in (
        str(outside),
        str(base / ".." / "secret.wav"),
        str(base / "link.wav"),
        str(base / "missing.wav"),
        str(base),
        "a.wav\0",
        "",
        None,
        42,
    ):
        assert inside(base, name) is None, name
    assert inside(None, str(good)) is None


def test_history_names_files_only_from_a_well_formed_call_id(tmp_path: Path) -> None:
    history = History(tmp_path, None, None)
    (tmp_path / "ok.json").write_text(json.dumps({"state": "completed", "caller": "+1"}))
    assert history.record("ok") is not None
    for hostile in ("../ok", "ok/../ok", "", "a" * 65, "ok.json", "..", "ok\0"):
        assert history.record(hostile) is None
    (tmp_path / "big.json").write_bytes(b" " * (2 * 1024 * 1024))
    assert history.record("big") is None
    assert Search(caller="+1").matches({"caller": "+1555"})
    assert not Search(date="2026-12-06").matches({"received_at": "2026-12-05T23:59:59Z"})


@pytest.mark.parametrize(
    ("method", "headers", "websocket", "refused"),
    [
        ("GET", {}, False, False),
        ("POST", {}, False, True),
        ("POST", {"X-Console": "1"}, False, False),
        ("POST", {"X-Console": "1", "Origin": "http://evil.example"}, False, True),
        ("POST", {"X-Console": "1", "Origin": "null"}, False, True),
        ("POST", {"X-Console": "1", "Origin": "http://gw:8080"}, False, False),
        ("GET", {}, True, True),
        ("GET", {"Origin": "http://gw:8080"}, True, False),
        ("GET", {"Origin": "http://gw:8081"}, True, True),
    ],
)
def test_cross_site_requests_are_refused(
    method: str, headers: dict[str, str], websocket: bool, refused: bool
) -> None:
    request = make_mocked_request(method, "/console/x", headers={"Host": "gw:8080", **headers})
    assert (cross_site(request, websocket=websocket) is not None) is refused


def test_the_cookie_proves_the_token_without_holding_it() -> None:
    token = b"console-token-for-tests-0123456789"
    auth = ConsoleAuth(token)
    value = session_value(token)
    assert token.decode() not in value and value != session_value(b"another-token-0123456789")
    good = make_mocked_request("GET", "/console/", headers={"Cookie": f"gw_console={value}"})
    bad = make_mocked_request("GET", "/console/", headers={"Cookie": "gw_console=" + "0" * 64})
    assert auth.cookie_ok(good) and not auth.cookie_ok(bad)
    assert not ConsoleAuth(None).cookie_ok(good)
    assert clean_label("<b>Sam</b>\r\nX-Evil: 1") == "bSambX-Evil 1"


def test_a_tap_hears_the_caller_even_when_the_audio_passes_through_untouched() -> None:
    """G.711 to the model as is: the payload still goes unchanged, and the tap (only while
    there is one) gets it decoded."""
    agent = AgentConfig.model_validate({"echo_suppression": None, "local_barge_in": None})
    uplink = CallerAudio(PCMU, True, agent, 20, None, lambda: None)
    pcm = (np.sin(np.arange(160) / 5) * 8000).astype(np.int16)
    payload = PCMU.encode(pcm)
    assert uplink.convert(payload, talking=False) is payload  # no tap: nothing decoded
    tap = CallTap(160, 8000)
    tap.watchers = 1
    uplink.tap = tap
    assert uplink.convert(payload, talking=False) == payload
    assert tap.levels()["caller"] > 0.2
