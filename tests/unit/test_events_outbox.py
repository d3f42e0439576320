"""Call events without the network: building them, the outbox's order, bound and files, the
back-off schedule (time passed in)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.hooks import outbox
from gateway.hooks.delivery import outbox_dir
from gateway.hooks.events import (
    MAX_FIELD_CHARS,
    MAX_TRANSCRIPT_CHARS,
    build,
    parse,
    tool_data,
    transcript_data,
)
from gateway.hooks.outbox import Pending, backoff_s


def event(kind: str = "call.started", call_id: str = "c1"):  # type: ignore[no-untyped-def]
    return build(kind, call_id, {"caller": "+4930123"}, 1_800_000_000.25)


def test_an_event_is_its_body_with_a_stable_id() -> None:
    e = build("call.answered", "abc", {"codec": "PCMU"}, 1_800_000_000.25, event_id="msg_x")
    assert json.loads(e.body) == {
        "id": "msg_x",
        "type": "call.answered",
        "timestamp": "2027-01-15T08:00:00.250+00:00",
        "call_id": "abc",
        "data": {"codec": "PCMU"},
    }
    assert parse(e.body) == e
    assert build("call.started", "abc", {}, 0).id != build("call.started", "abc", {}, 0).id


@pytest.mark.parametrize(
    "body", [b"[]", b"{}", b'{"id": "", "type": "x", "call_id": "c"}', b"\xff"]
)
def test_a_body_that_is_not_an_event_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse(body)


def test_tool_data_says_the_outcome_and_bounds_what_the_model_wrote() -> None:
    ok = tool_data("lookup", '{"order": 7}', '{"status": "shipped"}', 12)
    assert ok == {
        "name": "lookup",
        "arguments": '{"order": 7}',
        "output": '{"status": "shipped"}',
        "ok": True,
        "ms": 12,
    }
    failed = tool_data("lookup", "x" * 100_000, '{"ok": false, "error": "timeout"}', 5)
    assert failed["ok"] is False
    assert len(failed["arguments"]) == MAX_FIELD_CHARS + 1


def test_the_transcript_in_call_ended_is_bounded() -> None:
    turn = {"role": "caller", "text": "a" * 1000}
    few = transcript_data([turn] * 3)
    assert few == {"turns": [turn] * 3, "truncated": False}
    many = transcript_data([turn] * (MAX_TRANSCRIPT_CHARS // 1000 + 10))
    assert many["truncated"] is True
    assert len(many["turns"]) == MAX_TRANSCRIPT_CHARS // 1000


def test_backoff_doubles_from_one_second_up_to_the_cap_with_jitter() -> None:
    assert [backoff_s(n, 300, 0.999999) for n in (1, 2, 3, 4)] == pytest.approx([1, 2, 4, 8])
    assert [backoff_s(n, 300, 0.0) for n in (1, 2, 3)] == [0.5, 1, 2]
    assert backoff_s(20, 300, 0.999999) == pytest.approx(300)
    assert backoff_s(10_000, 300, 0.0) == 150  # no overflow however long it failed
    assert backoff_s(1, 0.2, 0.5) == pytest.approx(0.15)


def test_one_calls_events_go_in_order_and_other_calls_do_not_wait() -> None:
    q = Pending(max_pending=100, retry_max_s=60)
    started, _ = q.add(event("call.started", "a"), written=True)
    ended, _ = q.add(event("call.ended", "a"), written=True)
    other, _ = q.add(event("call.started", "b"), written=True)
    assert q.take(0.0) is started
    assert q.take(0.0) is other  # a's call.ended waits for a's call.started
    assert q.take(0.0) is None
    wait = q.failed(started, now=10.0, rand=0.0)
    assert wait == 0.5 and q.next_wake() == 10.5
    assert q.take(10.4) is None  # its back-off, and a's next event still waits behind it
    assert q.take(10.5) is started
    assert q.delivered(started)
    assert q.take(10.5) is ended
    assert q.delivered(ended) and q.delivered(other)
    assert len(q) == 0 and q.next_wake() is None


def test_an_event_not_yet_on_disk_is_not_attempted() -> None:
    q = Pending(max_pending=10, retry_max_s=60)
    entry, _ = q.add(event())
    assert q.take(0.0) is None
    entry.written = True
    assert q.take(0.0) is entry


def test_beyond_the_bound_the_oldest_is_dropped() -> None:
    q = Pending(max_pending=3, retry_max_s=60)
    entries = [q.add(event(call_id=str(n)), written=True)[0] for n in range(3)]
    in_flight = q.take(0.0)
    assert in_flight is entries[0]
    newest, dropped = q.add(event(call_id="3"), written=True)
    assert dropped == [entries[0]]
    assert [e.seq for e in q.entries.values()] == [2, 3, 4]
    assert not q.delivered(in_flight)  # its late 2xx finds it gone: not counted twice
    assert newest.seq == 4


def test_files_round_trip_in_order_and_survive_a_new_queue(tmp_path: Path) -> None:
    box = tmp_path / "box"
    os.close(outbox.open_dir(box))
    q = Pending(max_pending=10, retry_max_s=60)
    entries = [q.add(event(call_id=f"c{n}"))[0] for n in range(3)]
    for entry in entries:
        outbox.write(box, entry)
    outbox.remove(box, entries[1])
    outbox.remove(box, entries[1])  # twice: nothing to do
    (box / "000000000099_msg_x.json.tmp").write_bytes(b"half")  # killed while writing
    bad = []
    loaded = outbox.load(box, lambda path, reason: bad.append(path.name))
    # Loaded without their bodies (memory stays small); each is read again to be sent.
    expected = [(1, entries[0].event), (3, entries[2].event)]
    assert loaded == [(seq, replace(e, body=b"")) for seq, e in expected]
    assert bad == [] and not list(box.glob("*.tmp"))
    again = Pending(max_pending=10, retry_max_s=60)
    for seq, e in loaded:
        entry, _ = again.add(e, written=True, seq=seq)
        entry.in_memory = False
        assert outbox.read_body(box, entry) == expected[0 if seq == 1 else 1][1].body
    assert again.add(event())[0].seq == 4  # numbering goes on after the restart


def test_a_written_body_leaves_memory_and_is_read_back(tmp_path: Path) -> None:
    entry, _ = Pending(max_pending=10, retry_max_s=60).add(event())
    body = entry.event.body
    assert outbox.read_body(tmp_path, entry) == body  # not yet on disk: from memory
    outbox.write(tmp_path, entry)
    outbox.forget_body(entry)
    assert entry.event.body == b"" and outbox.read_body(tmp_path, entry) == body
    outbox.remove(tmp_path, entry)
    with pytest.raises(FileNotFoundError):
        outbox.read_body(tmp_path, entry)


def test_a_file_that_is_not_our_event_is_set_aside(tmp_path: Path) -> None:
    good = event()
    (tmp_path / f"000000000001_{good.id}.json").write_bytes(good.body)
    (tmp_path / "000000000002_msg_y.json").write_bytes(b"not json")
    (tmp_path / "000000000003_msg_z.json").write_bytes(good.body)  # id differs from the name
    (tmp_path / "notes.txt").write_text("left alone")
    bad: list[str] = []
    loaded = outbox.load(tmp_path, lambda path, reason: bad.append(path.name))
    assert loaded == [(1, replace(good, body=b""))]
    assert sorted(bad) == ["000000000002_msg_y.json", "000000000003_msg_z.json"]
    assert (tmp_path / "000000000002_msg_y.json.bad").exists()
    assert (tmp_path / "notes.txt").exists()


def test_an_outbox_that_cannot_hold_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        outbox.open_dir(tmp_path / "file" / "events")


def test_one_outbox_serves_one_process_at_a_time(tmp_path: Path) -> None:
    fd = outbox.open_dir(tmp_path)
    with pytest.raises(OSError, match="another gateway process uses this outbox"):
        outbox.open_dir(tmp_path)  # a second open file description: flock refuses it
    os.close(fd)
    os.close(outbox.open_dir(tmp_path))  # released: the next one may take it


def test_the_default_directory_follows_systemd_state_directory() -> None:
    assert outbox_dir(Path("/x")) == Path("/x")
    state = {"STATE_DIRECTORY": "/var/lib/sip-realtime-gateway:/var/lib/sip-realtime-gateway/rec"}
    assert outbox_dir(None, state) == Path("/var/lib/sip-realtime-gateway/events")
    assert outbox_dir(None, {}) == Path("events-outbox")
