"""Transcript lines: what the caller heard, cut where they interrupted, never lost at the end."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.bridge.playback import ItemAccount, ItemKey
from gateway.bridge.transcript import TranscriptLog, cut_text
from tests.tmpfs import fill, small_tmpfs

TEXT = "The quick brown fox jumps over the lazy dog"


@pytest.mark.parametrize(
    ("heard", "expected"),
    [
        (0, ""),
        (1000, TEXT),
        (1500, TEXT),  # heard beyond the item (clamped elsewhere): everything
        (500, "The quick brown fox"),  # 21.5 chars: the word under the cut was not heard
        (230, "The quick"),  # exactly at the space after "quick"
    ],
)
def test_cut_is_proportional_and_keeps_whole_words(heard: int, expected: str) -> None:
    assert cut_text(TEXT, heard, 1000) == expected


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Buffer(io.StringIO):
    """Keeps its text once closed."""

    text = ""

    def close(self) -> None:
        self.text = self.getvalue()
        super().close()


def lines(buf: Buffer) -> list[dict[str, Any]]:
    text = buf.text if buf.closed else buf.getvalue()
    return [json.loads(line) for line in text.splitlines()]


def make() -> tuple[TranscriptLog, Buffer, Clock]:
    buf = Buffer()
    clock = Clock()
    log = TranscriptLog(buf, structlog.get_logger(), clock=clock, wall=lambda: 1_700_000_000.0)
    return log, buf, clock


def played(item_id: str, heard_ms: int, received_ms: float, *, interrupted: bool, at: float):
    item = ItemAccount(ItemKey("resp_" + item_id, item_id), received_ms=received_ms)
    item.sent_samples = heard_ms * 8
    item.queued_samples = item.sent_samples if not interrupted else item.sent_samples + 800
    item.done = not interrupted
    item.interrupted = interrupted
    item.first_sent_at = at
    return item


def test_agent_turn_waits_for_its_playback_then_is_cut_where_the_caller_interrupted() -> None:
    t, buf, clock = make()
    clock.t = 101.0
    t.speech_started("u1")
    clock.t = 102.5
    t.caller_said("u1", "What is the weather?")
    t.agent_said("a1", TEXT)  # the transcript arrives long before the audio is played
    assert len(lines(buf)) == 1
    t.agent_played(played("a1", 500, 1000.0, interrupted=True, at=103.0))
    caller, agent = lines(buf)
    assert caller["role"] == "caller" and caller["offset_s"] == 1.0
    assert caller["at"] == "2023-11-14T22:13:21.000+00:00"
    assert agent == {
        "type": "turn", "role": "agent", "item_id": "a1", "text": "The quick brown fox",
        "at": "2023-11-14T22:13:23.000+00:00", "offset_s": 3.0, "response_id": "resp_a1",
        "heard_ms": 500, "audio_ms": 1000, "interrupted": True, "full_text": TEXT,
    }  # fmt: skip


def test_text_after_playback_and_played_in_full() -> None:
    t, buf, _ = make()
    t.agent_played(played("a1", 1000, 1000.0, interrupted=False, at=100.5))
    assert lines(buf) == []
    t.agent_said("a1", TEXT)
    [agent] = lines(buf)
    assert agent["text"] == TEXT and not agent["interrupted"] and "full_text" not in agent


def test_close_writes_what_is_open_and_the_end() -> None:
    """BYE mid-sentence: the answer being played has no final transcript yet; the deltas
    that came are what is known, cut to what was heard."""
    t, buf, clock = make()
    t.agent_delta("a1", "The quick brown ")
    t.agent_delta("a1", "fox jumps over the lazy dog")
    t.agent_played(played("a1", 230, 1000.0, interrupted=True, at=100.2))
    t.agent_said("a2", "Never played")
    clock.t = 110.0
    t.close("caller_bye")
    t.close("again")  # idempotent
    agent, unplayed, end = lines(buf)
    assert agent["text"] == "The quick" and agent["full_text"] == TEXT
    assert unplayed["text"] == "" and unplayed["heard_ms"] == 0
    assert end == {
        "type": "call", "event": "ended", "reason": "caller_bye", "duration_s": 10.0,
        "at": "2023-11-14T22:13:30.000+00:00",
    }  # fmt: skip
    assert buf.closed


def test_every_line_reaches_the_file_at_once(tmp_path) -> None:
    t = TranscriptLog.open(tmp_path, "abc/../1", structlog.get_logger(), caller="sip:1@x")
    t.speech_started("u1")
    t.caller_said("u1", "hello")
    [path] = tmp_path.iterdir()  # the id cannot escape the directory
    assert path.name.endswith("_abc_.._1.jsonl")
    written = [json.loads(line) for line in path.read_text().splitlines()]  # before close
    assert [w.get("event", w.get("role")) for w in written] == ["answered", "caller"]
    assert written[0]["caller"] == "sip:1@x"
    t.close("caller_bye")


def test_an_unwritable_directory_only_logs(tmp_path) -> None:
    t = TranscriptLog.open(tmp_path / "missing", "c1", structlog.get_logger())
    assert t.file is None
    t.caller_said("u1", "hello")
    t.close("caller_bye")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as directory:
        yield directory


def test_a_full_disk_keeps_the_transcript_to_its_last_whole_line(disk: Path) -> None:
    """The disk fills in the middle of a call: the file ends with the last line that fitted
    (a reader never finds half a line), one log line, one count; the turns are still logged."""
    fill(disk, leave=4096)
    failures: list[str] = []
    with capture_logs() as logs:
        t = TranscriptLog.open(
            disk, "c1", structlog.get_logger(), on_failure=lambda: failures.append("transcript")
        )
        long = "word " * 300  # 1.5 kB a turn: the third does not fit
        for n in range(6):
            t.caller_said(f"u{n}", long)
        t.close("caller_bye")
    assert failures == ["transcript"]
    [failed] = [e for e in logs if e["event"] == "call.transcript_write_failed"]
    assert failed["errno"] == "ENOSPC" and failed["path"] == t.path
    assert len([e for e in logs if e["event"] == "call.transcript"]) == 6
    [path] = disk.glob("*.jsonl")
    written = [json.loads(line) for line in path.read_bytes().decode().splitlines()]
    assert [w.get("event", w.get("role")) for w in written] == ["answered", "caller", "caller"]
    assert path.read_bytes().endswith(b"\n")


def test_a_transcript_that_cannot_start_leaves_no_file(disk: Path) -> None:
    fill(disk)
    failures: list[str] = []
    with capture_logs() as logs:
        t = TranscriptLog.open(
            disk, "c1", structlog.get_logger(), on_failure=lambda: failures.append("transcript")
        )
        t.caller_said("u1", "hello")
        t.close("caller_bye")
    assert t.file is None and t.path is None
    assert failures == ["transcript"]
    assert [e["errno"] for e in logs if e["event"] == "call.transcript_unavailable"] == ["ENOSPC"]
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_agent_turns_that_never_complete_stay_bounded() -> None:
    """A service that sends transcripts of 10,000 items it never plays (and an endless one):
    at most MAX_OPEN_AGENT_TURNS stay open, the older ones are written as they stand, and a
    turn's text stops at MAX_TURN_CHARS."""
    from gateway.bridge.transcript import MAX_OPEN_AGENT_TURNS, MAX_TURN_CHARS

    log, buf, _ = make()
    for i in range(10_000):
        log.agent_delta(f"item_{i}", "word ")
        if i % 2:
            log.agent_said(f"item_{i}", f"final {i}")
        assert log.open_agent_turns <= MAX_OPEN_AGENT_TURNS
    for _ in range(100):
        log.agent_delta("endless", "x" * 1000)
    written = [line for line in lines(buf) if line["type"] == "turn"]
    assert len(written) == 10_000 + 1 - MAX_OPEN_AGENT_TURNS
    assert written[0]["item_id"] == "item_0" and written[0]["text"] == ""
    assert written[0]["full_text"] == "word "
    assert written[1]["full_text"] == "final 1"
    log.close("caller_bye")
    turns = [line for line in lines(buf) if line["type"] == "turn"]
    assert len(turns) == 10_001
    endless = next(t for t in turns if t["item_id"] == "endless")
    assert len(endless["full_text"]) == MAX_TURN_CHARS
