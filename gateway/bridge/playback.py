"""The outbound audio buffer between the model and the pacer.

The model's audio arrives in bursts, faster than real time; the pacer takes one
frame per tick. Per item we count what was received and what was really sent,
so that a barge-in can tell the model exactly how much of its answer was heard.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

RATE = 8000
MAX_BUFFER_S = 300  # a runaway response cannot grow the buffer without bound


@dataclass(frozen=True, slots=True)
class ItemKey:
    response_id: str
    item_id: str
    content_index: int = 0


@dataclass(slots=True)
class ItemAccount:
    received_ms: float = 0.0  # on the model's timeline (what it generated)
    sent_samples: int = 0  # 8 kHz samples actually handed to the pacer
    done: bool = False

    @property
    def sent_ms(self) -> float:
        return self.sent_samples * 1000 / RATE


class Playback:
    def __init__(self, frame_samples: int = 160) -> None:
        self.frame_samples = frame_samples
        self._chunks: deque[tuple[ItemKey, np.ndarray]] = deque()
        self._offset = 0  # samples of the first chunk already sent
        self._buffered = 0
        self._frame = np.zeros(frame_samples, dtype=np.int16)
        self.items: dict[ItemKey, ItemAccount] = {}
        self.dropped_samples = 0

    @property
    def buffered_ms(self) -> float:
        return self._buffered * 1000 / RATE

    def account(self, key: ItemKey) -> ItemAccount:
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = ItemAccount()
        return item

    def push(self, key: ItemKey, pcm: np.ndarray, received_ms: float) -> None:
        """Queue 8 kHz audio of `key`; `received_ms` is how much model audio it came from."""
        self.account(key).received_ms += received_ms
        if not len(pcm):
            return
        if self._buffered + len(pcm) > MAX_BUFFER_S * RATE:
            self.dropped_samples += len(pcm)
            return
        self._chunks.append((key, pcm))
        self._buffered += len(pcm)

    def mark_done(self, key: ItemKey) -> None:
        """No more audio will come for `key`: its last partial frame may go out padded."""
        self.account(key).done = True

    def next_frame(self) -> np.ndarray | None:
        """One frame for the pacer, or None (silence) when there is nothing ready."""
        n = self.frame_samples
        if self._buffered < n:
            if not self._buffered or not self.items[self._chunks[-1][0]].done:
                return None  # wait for the rest of a still-streaming answer
        out = self._frame
        filled = 0
        while filled < n and self._chunks:
            key, chunk = self._chunks[0]
            take = min(n - filled, len(chunk) - self._offset)
            out[filled : filled + take] = chunk[self._offset : self._offset + take]
            self.items[key].sent_samples += take
            filled += take
            self._offset += take
            if self._offset == len(chunk):
                self._chunks.popleft()
                self._offset = 0
        if filled < n:
            out[filled:] = 0
        self._buffered -= filled
        return out

    @property
    def playing(self) -> ItemKey | None:
        """The item whose audio is next in line (the one a barge-in interrupts)."""
        return self._chunks[0][0] if self._chunks else None

    def flush(self) -> list[ItemKey]:
        """Drop everything not yet sent; return the items that were cut short."""
        cut: list[ItemKey] = []
        for key, _ in self._chunks:
            if key not in cut:
                cut.append(key)
        self._chunks.clear()
        self._offset = 0
        self._buffered = 0
        return cut
