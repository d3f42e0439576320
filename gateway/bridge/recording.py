"""A call's recording: one stereo WAV, the caller left and the agent right, as heard.

The pacer's clock is the recording's clock: each tick takes one frame of what the caller
sent and the frame the agent actually sent (silence when none, so a barge-in cut is heard
where it happened). Disk writes happen in a worker thread, about once a second, never on the
event loop.

The file is a valid WAV at every moment: each second of audio goes to the kernel, then the
header is rewritten to count it (`WavFile`). A killed gateway leaves a recording that plays,
short of at most the last two seconds (the second being filled and the one being written).
A full disk ends the recording (one log line, one metric), never the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import struct
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import structlog

from ..durable import errno_name, fsync_dir, write_all
from ..media.rates import TELEPHONE_RATE

RATE = TELEPHONE_RATE
CHUNK_S = 1.0  # how much audio is handed to the writer at a time
MAX_CALLER_BACKLOG_S = 0.2  # caller audio ahead of our clock beyond this is dropped
MAX_PENDING_CHUNKS = 30  # a stuck disk costs at most this much memory, then audio is dropped
CLOSE_WAIT_S = 2.0  # a call's end waits this long for the writer; then it finishes alone

log = structlog.get_logger("gateway.recording")
T = TypeVar("T")

# Every writer, until it is done: one held up by a slow disk outlives its call's close().
_WRITERS: set[asyncio.Task[None]] = set()


def stereo_frame(out: np.ndarray, caller: deque[np.ndarray], agent: np.ndarray | None) -> int:
    """One pacer tick of both sides into ``out`` (frame x 2): the agent's frame right, the
    caller's queued audio left (silence where it falls short); returns the caller samples
    taken from the queue. The recorder and the console's listen-in share it."""
    n = len(out)
    out[:, 1] = 0 if agent is None else agent[:n]
    taken = 0
    while taken < n and caller:
        head = caller[0]
        take = min(n - taken, len(head))
        out[taken : taken + take, 0] = head[:take]
        taken += take
        if take == len(head):
            caller.popleft()
        else:
            caller[0] = head[take:]
    out[taken:, 0] = 0
    return taken


class WavFile:
    """A 16-bit PCM WAV whose 44-byte header always counts the audio written so far.

    Audio goes to the kernel first, then the header's RIFF and data sizes are rewritten (one
    positional write at offset 0): a process killed at any point leaves a file that opens and
    plays. (The `wave` module writes its sizes when the first frames are written and fixes
    them only at close: killed, its file claimed the first second.) Blocking: call it from a
    worker thread.
    """

    HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
    MAX_DATA = 0xFFFFFFFF - 36  # the sizes are 32-bit: 37 hours of 8 kHz stereo

    def __init__(self, path: Path, rate: int, channels: int = 2) -> None:
        """Create `path` with its header; on failure nothing is left behind."""
        self.path = path
        self.rate, self.channels = rate, channels
        self.data_bytes = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            self._write_header()
        except BaseException:
            os.close(self._fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    def append(self, data: bytes) -> None:
        """Add `data` (whole frames); on failure the file still ends with the last whole chunk
        and its header counts exactly that."""
        if self.data_bytes + len(data) > self.MAX_DATA:
            raise OSError(errno.EFBIG, "a WAV file holds at most 4 GiB")
        try:
            write_all(self._fd, data, self.HEADER.size + self.data_bytes)
        except OSError:
            with contextlib.suppress(OSError):  # what part of the chunk fitted goes again
                os.ftruncate(self._fd, self.HEADER.size + self.data_bytes)
            raise
        self.data_bytes += len(data)
        self._write_header()

    def close(self) -> None:
        """fsync the file and its directory, then close (closed even if fsync fails)."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)

    def _write_header(self) -> None:
        block = 2 * self.channels
        header = self.HEADER.pack(
            b"RIFF", 36 + self.data_bytes, b"WAVE",
            b"fmt ", 16, 1, self.channels, self.rate, self.rate * block, block, 16,
            b"data", self.data_bytes,
        )  # fmt: skip
        write_all(self._fd, header, 0)


class Recording:
    """Collects a call's audio on the event loop; one writer task puts it on disk.

    The writer is the only one to touch the file, one operation at a time, each run to its end
    in a worker thread even when the task is cancelled (see `_in_thread`); `close` asks it to
    finish and waits for it, never cancels it.
    """

    def __init__(
        self,
        path: Path,
        frame_samples: int,
        on_failure: Callable[[], None] = lambda: None,
        rate: int = RATE,
    ) -> None:
        """``rate``: the call's codec rate (8000 G.711, 16000 G.722, 24000 Opus)."""
        self.path = path
        self.rate = rate
        self._frame = frame_samples
        self._on_failure = on_failure
        self._caller: deque[np.ndarray] = deque()
        self._caller_samples = 0
        self._chunk = np.zeros((int(rate * CHUNK_S), 2), dtype="<i2")
        self._filled = 0
        self._pending: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self.frames = 0
        self.dropped_chunks = 0
        self.failed = False

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_all())
        _WRITERS.add(self._writer)
        self._writer.add_done_callback(_WRITERS.discard)

    def caller(self, pcm: np.ndarray) -> None:
        """The caller's audio as it arrives (at the codec's rate)."""
        self._caller.append(pcm)
        self._caller_samples += len(pcm)
        while self._caller_samples > self.rate * MAX_CALLER_BACKLOG_S + self._frame:
            self._caller_samples -= len(self._caller.popleft())

    def tick(self, agent: np.ndarray | None) -> None:
        """One pacer tick: a frame of each side goes into the recording."""
        n = self._frame
        out = self._chunk[self._filled : self._filled + n]
        self._caller_samples -= stereo_frame(out, self._caller, agent)
        self._filled += n
        self.frames += 1
        if self._filled + n > len(self._chunk):
            self._hand_over()

    def _hand_over(self) -> None:
        data = self._chunk[: self._filled].tobytes()
        self._filled = 0
        if self.failed or self._closing:
            return
        if len(self._pending) >= MAX_PENDING_CHUNKS:
            self.dropped_chunks += 1
            return
        self._pending.append(data)
        self._wake.set()

    async def close(self) -> None:
        """Write what is left and finish the file (whatever way the call ended).

        Waits for the writer to write its last chunk, the final header and close the file, up
        to CLOSE_WAIT_S; a writer held up by a slow disk then finishes on its own."""
        if self._filled:
            self._hand_over()
        self._closing = True
        self._wake.set()
        writer = self._writer
        if writer is not None:
            done, _ = await asyncio.wait({writer}, timeout=CLOSE_WAIT_S)
            if not done:
                log.warning(
                    "recording.close_slow",
                    path=str(self.path),
                    pending_s=len(self._pending) * CHUNK_S,
                )
        if self.dropped_chunks:
            log.warning("recording.dropped", path=str(self.path), seconds=self.dropped_chunks)

    async def _write_all(self) -> None:
        wav: WavFile | None = None
        try:
            wav = await _in_thread(WavFile, self.path, self.rate)
            while True:
                while self._pending:
                    await _in_thread(wav.append, self._pending.popleft())
                if self._closing:
                    break
                self._wake.clear()
                await self._wake.wait()
        except OSError as exc:
            self._failed(exc, wav)
        finally:
            if wav is not None:
                try:
                    await _in_thread(wav.close)
                except OSError as exc:
                    self._failed(exc, wav)

    def _failed(self, exc: OSError, wav: WavFile | None) -> None:
        """Log and count once; the audio from now on is not kept."""
        self._pending.clear()
        if self.failed:
            return
        self.failed = True
        kept = round(wav.data_bytes / (4 * self.rate), 3) if wav is not None else None
        log.error(
            "recording.failed",
            path=str(self.path),
            errno=errno_name(exc),
            error=exc.strerror,
            kept_s=kept,
        )
        self._on_failure()


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a worker thread, awaited to its end even if the caller is cancelled.

    A cancelled ``await asyncio.to_thread(...)`` returns at once while the thread goes on: the
    next file operation (the final header, the close) would then run beside it, and a header
    could land in the audio or the audio after the close.
    """
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        raise
