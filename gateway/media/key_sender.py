"""RFC 4733 telephone-events toward the caller (keys the control API sends), sans-I/O.

One key is many packets sharing the event's start timestamp (§2.3.1): the first with the
marker bit, then one per ptime with the duration so far, then the end packet (E bit) three
times (§2.5.1.4), all on the call's own packet grid in place of its audio. Between keys a gap
of audio lets a receiver tell two equal keys apart. The audio that would have been sent waits
(the shell does not take frames while a key is on the wire), so what the caller hears of the
agent stays as the playback accounts it.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable

from .dtmf import EVENT_NAMES

__all__ = ["KEY_CHARACTERS", "MAX_PENDING_KEYS", "KeySender"]

KEY_CHARACTERS = EVENT_NAMES  # 0-9 * # A-D
MAX_PENDING_KEYS = 64
VOLUME_DBM0 = 10  # -10 dBm0 (§2.3.4): the level of a real key press
END_PACKETS = 3
_PAYLOAD = struct.Struct("!BBH")


class KeySender:
    """Turns queued keys into event payloads, one per packet interval."""

    def __init__(
        self, frame_samples: int, tone_ms: int = 100, gap_ms: int = 60, clock_rate: int = 8000
    ) -> None:
        # The event clock is the audio's RTP clock (RFC 4733 §2.1): 8000 for G.711 and G.722,
        # 48000 for Opus; ``frame_samples`` is one packet interval in its ticks.
        per_ms = clock_rate // 1000
        self.frame_samples = frame_samples
        self.tone_samples = max(frame_samples, tone_ms * per_ms)
        self.gap_frames = -(-gap_ms * per_ms // frame_samples)
        self._queue: deque[int] = deque()
        self._event: int | None = None
        self._start = 0
        self._duration = 0
        self._ends_sent = 0
        self._gap = 0
        self.on_key: Callable[[str], None] | None = None  # told each key as it starts

    def queue(self, keys: str) -> None:
        """Send these keys after those already queued; ValueError for anything else than
        0-9 * # A-D, or more than MAX_PENDING_KEYS waiting."""
        codes = []
        for key in keys.upper():
            if key not in KEY_CHARACTERS:
                raise ValueError(f"{key!r} is not a key (0-9, *, #, A-D)")
            codes.append(KEY_CHARACTERS.index(key))
        if not codes:
            raise ValueError("no key to send")
        if len(self._queue) + len(codes) > MAX_PENDING_KEYS:
            raise ValueError(f"at most {MAX_PENDING_KEYS} keys may wait to be sent")
        self._queue.extend(codes)

    @property
    def busy(self) -> bool:
        """A key is on the wire or waiting (its gap included)."""
        return self._event is not None or bool(self._queue) or self._gap > 0

    def next_packet(self, timestamp: int) -> tuple[bytes, bool, int] | None:
        """This packet interval's event (payload, marker, event timestamp), or None to send
        audio. ``timestamp`` is the RTP timestamp this interval's packet would carry."""
        if self._event is None:
            if self._gap > 0:
                self._gap -= 1
                return None
            if not self._queue:
                return None
            self._event, self._start, self._duration = self._queue.popleft(), timestamp, 0
            self._ends_sent = 0
            if self.on_key is not None:
                self.on_key(KEY_CHARACTERS[self._event])
        if self._duration < self.tone_samples:
            first = self._duration == 0
            self._duration = min(self._duration + self.frame_samples, 0xFFFF)
            return self._payload(end=False), first, self._start
        payload = self._payload(end=True)
        self._ends_sent += 1
        if self._ends_sent == END_PACKETS:
            self._event, self._gap = None, self.gap_frames
        return payload, False, self._start

    def _payload(self, *, end: bool) -> bytes:
        assert self._event is not None
        return _PAYLOAD.pack(self._event, (0x80 if end else 0) | VOLUME_DBM0, self._duration)
