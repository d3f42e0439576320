"""A call's recording: one stereo WAV, the caller left and the agent right, as heard.

The pacer's clock is the recording's clock: each tick takes one frame of what the caller
sent and the frame the agent actually sent (silence when none, so a barge-in cut is heard
where it happened). Disk writes happen in a worker thread, about once a second, never on the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections import deque
from pathlib import Path

import numpy as np
import structlog

RATE = 8000
CHUNK_S = 1.0  # how much audio is handed to the writer at a time
MAX_CALLER_BACKLOG_S = 0.2  # caller audio ahead of our clock beyond this is dropped
MAX_PENDING_CHUNKS = 30  # a stuck disk costs at most this much memory, then audio is dropped

log = structlog.get_logger("gateway.recording")


class Recording:
    def __init__(self, path: Path, frame_samples: int) -> None:
        self.path = path
        self._frame = frame_samples
        self._caller: deque[np.ndarray] = deque()
        self._caller_samples = 0
        self._chunk = np.zeros((int(RATE * CHUNK_S), 2), dtype="<i2")
        self._filled = 0
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_PENDING_CHUNKS)
        self._writer: asyncio.Task[None] | None = None
        self.frames = 0
        self.dropped_chunks = 0

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_all())

    def caller(self, pcm: np.ndarray) -> None:
        """The caller's audio as it arrives (8 kHz)."""
        self._caller.append(pcm)
        self._caller_samples += len(pcm)
        while self._caller_samples > RATE * MAX_CALLER_BACKLOG_S + self._frame:
            self._caller_samples -= len(self._caller.popleft())

    def tick(self, agent: np.ndarray | None) -> None:
        """One pacer tick: a frame of each side goes into the recording."""
        n = self._frame
        out = self._chunk[self._filled : self._filled + n]
        out[:, 1] = 0 if agent is None else agent[:n]
        taken = 0
        while taken < n and self._caller:
            head = self._caller[0]
            take = min(n - taken, len(head))
            out[taken : taken + take, 0] = head[:take]
            taken += take
            if take == len(head):
                self._caller.popleft()
            else:
                self._caller[0] = head[take:]
        self._caller_samples -= taken
        out[taken:, 0] = 0
        self._filled += n
        self.frames += 1
        if self._filled + n > len(self._chunk):
            self._hand_over()

    def _hand_over(self) -> None:
        data = self._chunk[: self._filled].tobytes()
        self._filled = 0
        if self._queue.full():
            self.dropped_chunks += 1
            return
        self._queue.put_nowait(data)

    async def close(self) -> None:
        """Write what is left and finish the file (whatever way the call ended)."""
        if self._filled:
            self._hand_over()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        if self._writer is not None:
            if self._queue.full():  # no room for the end marker: stop after what is queued
                self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self.dropped_chunks:
            log.warning("recording.dropped", path=str(self.path), seconds=self.dropped_chunks)

    async def _write_all(self) -> None:
        wav = await asyncio.to_thread(_open, self.path)
        try:
            while (data := await self._queue.get()) is not None:
                await asyncio.to_thread(wav.writeframesraw, data)
        except OSError as exc:
            log.error("recording.failed", path=str(self.path), error=exc.strerror)
        finally:
            await asyncio.to_thread(wav.close)


def _open(path: Path) -> wave.Wave_write:
    wav = wave.open(str(path), "wb")
    wav.setnchannels(2)
    wav.setsampwidth(2)
    wav.setframerate(RATE)
    return wav
