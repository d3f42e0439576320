"""The model's audio as PCM at the codec's rate for the playback queue, item by item.

PCM16 at 24 kHz goes through one resampler stream to the codec's rate (``media/conversion.py``:
minimum-phase FIRs, to 8 kHz for G.711 and to 16 kHz for G.722; nothing for Opus at 24 kHz);
G.711 (``realtime.audio_format: g711``) is only decoded. The stream is flushed at the end of
every item, and before the first delta of another item if that end never came, so item
boundaries stay exact: whatever the resampler holds back always belongs to the item being
received, and sample ``n`` of an item is its model time ``n / rate`` s (see ``playback.py``).
"""

from __future__ import annotations

import numpy as np

from ..media.codecs import Codec
from ..media.conversion import converter
from ..realtime.protocol import PCM16_RATE
from .playback import ItemKey, Playback

PCM16_BYTES_PER_MS = PCM16_RATE * 2 // 1000
G711_BYTES_PER_MS = 8


class ModelAudio:
    def __init__(self, playback: Playback, codec: Codec, passthrough: bool) -> None:
        self.playback = playback
        self.codec = codec
        self.passthrough = passthrough
        self._resampler = None if passthrough else converter(PCM16_RATE, codec.rate)
        self._current: ItemKey | None = None  # the item whose audio the resampler holds

    def delta(self, key: ItemKey, audio: bytes) -> None:
        if self.passthrough:
            self.playback.push(key, self.codec.decode(audio), len(audio) / G711_BYTES_PER_MS)
            return
        if self._resampler is None:  # Opus: the model's rate is the codec's
            usable = len(audio) - len(audio) % 2
            pcm = np.frombuffer(audio, dtype="<i2", count=usable // 2).astype(np.int16)
            self.playback.push(key, pcm, usable / PCM16_BYTES_PER_MS)
            return
        if self._current != key:
            self._end_item()
            self._current = key
        usable = len(audio) - len(audio) % 2
        pcm = self._resampler.process(np.frombuffer(audio, dtype="<i2", count=usable // 2))
        # A copy: the resampler's output is a view into 32-bit samples, twice the memory for
        # the seconds of an answer that wait in the playback queue.
        self.playback.push(key, pcm.copy(), usable / PCM16_BYTES_PER_MS)

    def done(self, key: ItemKey) -> None:
        """The item's audio is complete: release the resampler's hold-back into it."""
        if self._current == key:
            self._end_item()
        self.playback.mark_done(key)

    def cut(self) -> None:
        """Barge-in: what the resampler holds must never be heard."""
        if self._resampler is not None:
            self._resampler.reset()
        self._current = None

    @property
    def held_ms(self) -> float:
        """Model audio fed in but not yet out of the resampler (all of the current item)."""
        return self._resampler.delay_ms if self._resampler is not None else 0.0

    def _end_item(self) -> None:
        if self._current is not None and self._resampler is not None:
            self.playback.push(self._current, self._resampler.flush().copy(), 0.0)
        self._current = None
