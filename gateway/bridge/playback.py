"""The outbound audio buffer between the model and the pacer, with per-item accounting.

The model's audio arrives in bursts, faster than real time; the pacer takes one frame per
tick. Per item (response_id, item_id, content_index) we count what the model sent and what
really went on the wire, so that a barge-in can tell the model exactly how much of its answer
was heard, and the transcript can say the same.

Time is the model's timeline throughout: 8 kHz sample ``n`` of an item is model time
``n / 8`` ms, because the resampler emits time-aligned output (its filter delay is compensated
and paid as hold-back instead, see ``media/minphase.py``). So the audio heard is
``sent_samples / 8`` ms of the item, whatever the resampler still holds back (0.25 ms; soxr's
filter, used before, held 10-32 ms).
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..media.rates import TELEPHONE_RATE

RATE = TELEPHONE_RATE
MAX_BUFFER_S = 120.0  # media.playback_buffer_s: a runaway answer cannot grow memory unbounded
# A talk spurt starts only with this much queued (or the whole item): an underrun a few frames
# in is a gap the caller hears (and soxr, before issue 19, let the first delta out 10-32 ms
# short).  It costs latency only when the model's deltas are shorter than this.
START_MS = 40


LIVE: weakref.WeakSet[Playback] = weakref.WeakSet()  # every buffer alive (/debug/state)


@dataclass(frozen=True, slots=True)
class ItemKey:
    response_id: str
    item_id: str
    content_index: int = 0


@dataclass(slots=True, eq=False)
class ItemAccount:
    """One item's audio: received from the model, queued for the pacer, sent on the wire."""

    key: ItemKey
    received_ms: float = 0.0  # model audio received (its own timeline)
    queued_samples: int = 0  # 8 kHz samples that came out of the converter
    sent_samples: int = 0  # 8 kHz samples handed to the pacer, i.e. sent on the wire
    done: bool = False  # the model has sent all of this item's audio
    overflowed: bool = False  # audio beyond the buffer's cap was dropped: the rest goes too
    interrupted: bool = False  # cut short by a barge-in or by the end of the call
    first_sent_at: float | None = None  # clock time its first sample went out
    finished_at: float | None = None
    rate: int = RATE  # the samples' rate: the call's codec (16 kHz G.722, 24 kHz Opus)

    @property
    def sent_ms(self) -> float:
        return self.sent_samples * 1000 / self.rate

    @property
    def heard_ms(self) -> int:
        """Milliseconds of the item the caller heard: `audio_end_ms` of a truncate.

        Clamped to what was received: the service refuses a truncate beyond its audio.
        """
        return int(min(self.sent_ms, self.received_ms))

    @property
    def played_in_full(self) -> bool:
        return self.done and self.sent_samples >= self.queued_samples


class Playback:
    """Chunks of 8 kHz audio in, one frame per pacer tick out (sans-I/O).

    ``on_finished`` is called once per item, when it has been played in full or cut short;
    the item is then forgotten, so a long call keeps no history here.
    """

    def __init__(
        self,
        frame_samples: int = 160,
        *,
        on_finished: Callable[[ItemAccount], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_buffer_s: float = MAX_BUFFER_S,
        rate: int = RATE,
    ) -> None:
        """``rate``: the codec's sample rate, which every count here is in (8 kHz: G.711)."""
        LIVE.add(self)
        self.frame_samples = frame_samples
        self.rate = rate
        self.max_buffer_s = max_buffer_s
        self._max_samples = int(max_buffer_s * rate)
        self.on_finished = on_finished
        self.clock = clock
        self._chunks: deque[tuple[ItemAccount, np.ndarray]] = deque()
        self._offset = 0  # samples of the first chunk already sent
        self._buffered = 0
        self._frame = np.zeros(frame_samples, dtype=np.int16)
        self.items: dict[ItemKey, ItemAccount] = {}  # items not finished yet
        self.dropped_samples = 0
        self.held = False
        self._talking = False  # the last frame carried audio
        self._start_samples = START_MS * rate // 1000

    @property
    def buffered_ms(self) -> float:
        return self._buffered * 1000 / self.rate

    def account(self, key: ItemKey) -> ItemAccount:
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = ItemAccount(key, rate=self.rate)
        return item

    def push(self, key: ItemKey, pcm: np.ndarray, received_ms: float) -> None:
        """Queue 8 kHz audio of `key`; `received_ms` is how much model audio it came from."""
        item = self.account(key)
        item.received_ms += received_ms
        if not len(pcm):
            return
        if item.overflowed or self._buffered + len(pcm) > self._max_samples:
            # Once an answer overflows, the rest of it goes too: fragments of it played between
            # drops would be worse than its end missing.
            item.overflowed = True
            self.dropped_samples += len(pcm)
            return
        item.queued_samples += len(pcm)
        self._chunks.append((item, pcm))
        self._buffered += len(pcm)

    def mark_done(self, key: ItemKey) -> None:
        """No more audio will come for `key`: its last partial frame may go out padded."""
        item = self.account(key)
        item.done = True
        if item.played_in_full:
            self._finish(item)

    def hold(self) -> None:
        """Send silence but keep the queue and its place (local barge-in, unconfirmed)."""
        self.held = True

    def release(self) -> None:
        self.held = False

    def next_frame(self) -> np.ndarray | None:
        """One frame for the pacer, or None (silence) when there is nothing ready."""
        n = self.frame_samples
        need = n if self._talking else max(n, self._start_samples)
        if (
            self.held
            or not self._buffered
            or (self._buffered < need and not self._chunks[-1][0].done)
        ):
            self._talking = False
            return None  # wait for more of a still-streaming answer
        self._talking = True
        out = self._frame
        filled = 0
        while filled < n and self._chunks:
            item, chunk = self._chunks[0]
            start = self._offset
            take = min(n - filled, len(chunk) - start)
            if take == n:
                # The whole frame lies within one chunk (4 frames in 5): a view of it, no
                # copy. Nobody writes into a frame (echo and recording only read it).
                out = chunk[start : start + n]
            else:
                out[filled : filled + take] = chunk[start : start + take]
            if not item.sent_samples:
                item.first_sent_at = self.clock()
            item.sent_samples += take
            filled += take
            self._offset = start + take
            if self._offset == len(chunk):
                self._chunks.popleft()
                self._offset = 0
                if item.played_in_full:
                    self._finish(item)
        if filled < n:
            out[filled:] = 0
        self._buffered -= filled
        return out

    def interrupt(self) -> list[ItemAccount]:
        """Barge-in (or the end of the call): drop everything not yet sent; return the items
        the caller did not hear in full (audio still queued, or still streaming), now finished
        as interrupted."""
        self._chunks.clear()
        self._offset = 0
        self._buffered = 0
        self.held = False
        cut = [item for item in self.items.values() if not item.played_in_full]
        for item in cut:
            item.interrupted = True
            self._finish(item)
        return cut

    def _finish(self, item: ItemAccount) -> None:
        if self.items.get(item.key) is not item:
            return
        del self.items[item.key]
        item.finished_at = self.clock()
        if self.on_finished is not None:
            self.on_finished(item)
