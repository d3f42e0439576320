"""Files that survive a crash and a full disk: whole-file replacement and whole-piece appends,
on a real file system (a small tmpfs filled up for the full-disk cases)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.call_record import CallRecord
from gateway.durable import AppendFile, errno_name, write_atomically
from tests.tmpfs import fill, small_tmpfs


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as directory:
        yield directory


def test_a_record_is_replaced_whole_fsynced_then_renamed_then_its_directory_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    fsync, replace = os.fsync, os.replace

    def traced_fsync(fd: int) -> None:
        steps.append("fsync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def traced_replace(src: str | Path, dst: str | Path) -> None:
        steps.append(f"replace {Path(src).name} -> {Path(dst).name}")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", traced_fsync)
    monkeypatch.setattr(os, "replace", traced_replace)
    path = tmp_path / "calls" / "abc.json"
    path.parent.mkdir()
    path.write_text("old")
    write_atomically(path, b'{"new": 1}')
    assert path.read_text() == '{"new": 1}'
    assert steps == ["fsync abc.json.tmp", "replace abc.json.tmp -> abc.json", "fsync calls"]
    assert names(path.parent) == ["abc.json"]


def test_on_a_full_disk_a_record_write_fails_and_leaves_the_old_version_and_no_tmp(
    disk: Path,
) -> None:
    path = disk / "abc.json"
    path.write_text("old")
    fill(disk)
    with pytest.raises(OSError) as failed:
        write_atomically(path, b"x" * 10_000)
    assert errno_name(failed.value) == "ENOSPC"
    assert path.read_text() == "old"
    assert names(disk) == ["abc.json", "filler"]


async def test_a_call_record_carries_its_state_and_is_written_as_it_was_when_asked(
    tmp_path: Path,
) -> None:
    record = CallRecord("c1", "sip-1", "sip:a@x", "sip:b@y", "127.0.0.1:5060")
    record.state = "in_progress"
    writing = record.write(tmp_path)
    record.state = "completed"  # a later change is not in the write asked for before it
    await writing
    written = json.loads((tmp_path / "c1.json").read_text())
    assert written["state"] == "in_progress" and written["call_id"] == "c1"
    await record.write(tmp_path)
    assert json.loads((tmp_path / "c1.json").read_text())["state"] == "completed"
    assert CallRecord("c2", "s", "a", "b", "src").state == "completed"  # a refusal's


async def test_a_call_record_on_a_full_disk_raises_enospc_and_leaves_nothing(disk: Path) -> None:
    fill(disk)
    record = CallRecord("c1", "sip-1", "sip:a@x", "sip:b@y", "127.0.0.1:5060")
    with pytest.raises(OSError) as failed:
        await asyncio.wait_for(asyncio.ensure_future(record.write(disk)), 10)
    assert failed.value.errno == errno.ENOSPC
    assert names(disk) == ["filler"]


def test_appended_pieces_reach_the_file_at_once(tmp_path: Path) -> None:
    """Another reader (the disk after a SIGKILL) sees every piece as soon as it is written."""
    path = tmp_path / "t.jsonl"
    file = AppendFile(path, "one\n")
    file.write(b"two\n")
    assert path.read_text() == "one\ntwo\n"  # before any close or flush
    file.close()
    assert file.closed
    with pytest.raises(ValueError):
        file.write("three\n")


def test_on_a_full_disk_an_appended_file_ends_with_its_last_whole_piece(disk: Path) -> None:
    fill(disk, leave=8192)
    path = disk / "t.jsonl"
    file = AppendFile(path, "first\n")
    line = "x" * 999 + "\n"
    written = 0
    with pytest.raises(OSError) as failed:
        for _ in range(100):
            file.write(line)
            written += 1
    assert failed.value.errno == errno.ENOSPC
    assert 0 < written < 100
    assert path.read_text() == "first\n" + line * written  # the piece that did not fit is gone
    file.close()


def test_an_appended_file_that_cannot_hold_its_first_piece_is_not_left_behind(
    disk: Path,
) -> None:
    fill(disk)
    with pytest.raises(OSError):
        AppendFile(disk / "t.jsonl", "first\n")
    assert names(disk) == ["filler"]


def test_a_stale_tmp_of_a_killed_process_is_removed_at_start(tmp_path: Path) -> None:
    from gateway.startup import writable_dir

    (tmp_path / "a1.json").write_text("{}")
    (tmp_path / "a1.json.tmp").write_text("{half")
    (tmp_path / "keep.wav").write_bytes(b"RIFF")
    writable_dir("records.calls_dir", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a1.json", "keep.wav"]
