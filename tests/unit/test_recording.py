"""The recording's file: a valid WAV after every chunk (a killed process leaves one that
plays), one writer that never races its close, and a full disk that ends the recording only."""

from __future__ import annotations

import asyncio
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from structlog.testing import capture_logs

from gateway.bridge import recording as rec
from gateway.bridge.recording import RATE, Recording, WavFile
from tests.tmpfs import fill, small_tmpfs

FRAME = 160  # 20 ms at 8 kHz
CHUNK_BYTES = int(RATE * rec.CHUNK_S) * 4


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as directory:
        yield directory


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def frames_in(path: Path) -> int:
    """What the `wave` module reads from the file (as a player would), checked to be there."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, RATE)
        n = wav.getnframes()
        assert len(wav.readframes(n)) == 4 * n
    return n


def test_the_header_counts_every_chunk_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    wav = WavFile(path, RATE)
    assert frames_in(path) == 0  # an empty call is a valid, empty WAV
    wav.append(b"\1\0\2\0" * 8000)
    assert frames_in(path) == 8000  # not closed: what a SIGKILL now would leave
    wav.append(b"\3\0\4\0" * 4000)
    assert frames_in(path) == 12000
    assert path.stat().st_size == 44 + 12000 * 4
    wav.close()
    assert frames_in(path) == 12000


def ticks(recording: Recording, n: int, value: int = 1000) -> None:
    for _ in range(n):
        recording.caller(np.full(FRAME, value, dtype=np.int16))
        recording.tick(np.full(FRAME, -value, dtype=np.int16))


async def test_close_writes_the_last_partial_chunk_and_finishes_the_file(tmp_path: Path) -> None:
    recording = Recording(tmp_path / "call.wav", FRAME)
    recording.start()
    ticks(recording, 130)  # 2.6 s: two whole chunks and a part
    await recording.close()
    assert frames_in(recording.path) == 130 * FRAME
    with wave.open(str(recording.path), "rb") as wav:
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    assert (stereo[:, 0] == 1000).all() and (stereo[:, 1] == -1000).all()


class GatedWav(WavFile):
    """A disk that is slow when told to be; notes every file operation, start and end."""

    gate = threading.Event()
    started = threading.Event()
    closing = threading.Event()
    ops: ClassVar[list[str]] = []
    busy = 0
    overlapped = False

    def _op(self, name: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
        cls = type(self)
        cls.busy += 1
        cls.overlapped |= cls.busy > 1
        cls.ops.append(name)
        cls.started.set()
        if name == "close":
            cls.closing.set()
        try:
            assert cls.gate.wait(10), "the test never opened the gate"
            fn(*args)
        finally:
            cls.busy -= 1
            cls.ops.append(f"{name} done")

    def append(self, data: bytes) -> None:
        self._op("append", super().append, data)

    def close(self) -> None:
        self._op("close", super().close)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> type[GatedWav]:
    GatedWav.gate, GatedWav.started = threading.Event(), threading.Event()
    GatedWav.closing = threading.Event()
    GatedWav.ops, GatedWav.busy, GatedWav.overlapped = [], 0, False
    monkeypatch.setattr(rec, "WavFile", GatedWav)
    return GatedWav


async def test_a_cancelled_writer_finishes_the_chunk_in_flight_before_it_closes_the_file(
    tmp_path: Path, gated: type[GatedWav]
) -> None:
    """The race of the old writer: cancelled while a chunk was being written in a thread, it
    went on at once to close the file in a second thread, beside the first. Now the chunk in
    flight ends first, then the final header and the close."""
    recording = Recording(tmp_path / "call.wav", FRAME)
    recording.start()
    ticks(recording, 50)  # one chunk to the writer
    await asyncio.to_thread(gated.started.wait, 5)
    assert gated.ops == ["append"]
    assert recording._writer is not None
    recording._writer.cancel()  # what asyncio.run does to a task left at exit
    # The close must not start while the chunk is in flight (an absence: it takes a window).
    assert not await asyncio.to_thread(gated.closing.wait, 0.3)
    gated.gate.set()
    await asyncio.wait_for(asyncio.wait({recording._writer}), 10)
    assert gated.ops == ["append", "append done", "close", "close done"]
    assert not gated.overlapped
    assert frames_in(recording.path) == 50 * FRAME


async def test_a_close_held_up_by_a_slow_disk_returns_and_the_writer_finishes_alone(
    tmp_path: Path, gated: type[GatedWav], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rec, "CLOSE_WAIT_S", 0.05)
    recording = Recording(tmp_path / "call.wav", FRAME)
    recording.start()
    ticks(recording, 110)  # two chunks and a part
    await asyncio.to_thread(gated.started.wait, 5)
    with capture_logs() as logs:
        await asyncio.wait_for(recording.close(), 5)  # returns although the disk is stuck
    assert [e["event"] for e in logs] == ["recording.close_slow"]
    gated.gate.set()
    assert recording._writer is not None
    await asyncio.wait_for(asyncio.wait({recording._writer}), 10)
    assert not gated.overlapped
    assert gated.ops[-2:] == ["close", "close done"]
    assert frames_in(recording.path) == 110 * FRAME  # nothing queued was lost


async def test_a_full_disk_ends_the_recording_at_its_last_whole_chunk(disk: Path) -> None:
    fill(disk, leave=CHUNK_BYTES + 8192)  # room for the header and one chunk, not two
    failures: list[str] = []
    recording = Recording(disk / "call.wav", FRAME, lambda: failures.append("recording"))
    recording.start()
    with capture_logs() as logs:
        ticks(recording, 200)  # four chunks
        await recording.close()
    assert failures == ["recording"]  # once, however many chunks came after
    [failed] = [e for e in logs if e["event"] == "recording.failed"]
    assert failed["errno"] == "ENOSPC" and failed["kept_s"] == 1.0
    assert recording.failed
    assert frames_in(recording.path) == 8000
    assert recording.path.stat().st_size == 44 + CHUNK_BYTES  # the part that fitted is gone


async def test_a_recording_that_cannot_start_leaves_no_file(disk: Path) -> None:
    fill(disk)
    failures: list[str] = []
    recording = Recording(disk / "call.wav", FRAME, lambda: failures.append("recording"))
    recording.start()
    with capture_logs() as logs:
        ticks(recording, 120)
        await recording.close()
    assert failures == ["recording"]
    assert [e["errno"] for e in logs if e["event"] == "recording.failed"] == ["ENOSPC"]
    assert names(disk) == ["filler"]
