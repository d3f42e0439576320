"""RFC 4733 telephone-events (DTMF keys) decoded from RTP, sans-I/O: one digit per key press.

A sender reports one key press as many packets that share one RTP timestamp (the start of the
event, §2.3.1): updates every ~50 ms with the duration so far, then the end packet (E bit)
sent three times (§2.5.1.4).  We report the digit once, when its first end packet arrives.  If
every end packet is lost, the digit is reported when the next event starts or when the caller's
audio has clearly moved past it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .rates import TELEPHONE_RATE
from .rtp import RtpPacket

__all__ = ["DtmfDecoder", "DtmfEvent"]

# RFC 4733 §3.2: events 0-9, 10 = *, 11 = #, 12-15 = A-D; 16 = hook flash.
EVENT_NAMES = "0123456789*#ABCD"
FLASH = 16
# Audio this far past the last update of an event (whose end we never saw) means it is over.
# The sender updates at least every 50 ms (§2.5.1.2) while the key is held.
END_LOST_AFTER = TELEPHONE_RATE * 200 // 1000


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    digit: str  # "0"-"9", "*", "#", "A"-"D", or "flash"
    duration_ms: int
    end_seen: bool = True  # False: reported without an end packet (all lost)


@dataclass(slots=True)
class _Current:
    timestamp: int
    event: int
    duration: int
    reported: bool


class DtmfDecoder:
    """Feed it the telephone-event packets of one stream, in sequence order."""

    def __init__(self, clock_rate: int = TELEPHONE_RATE) -> None:
        """``clock_rate``: the event clock, the audio's (RFC 4733 §2.1): 8000, Opus 48000."""
        self.clock_rate = clock_rate
        self._end_lost_after = END_LOST_AFTER * clock_rate // TELEPHONE_RATE
        self.malformed = 0
        self.unknown_events = 0
        self._current: _Current | None = None

    @property
    def pending(self) -> bool:
        """A key press is under way and not reported yet."""
        return self._current is not None and not self._current.reported

    def push(self, packet: RtpPacket) -> list[DtmfEvent]:
        """One telephone-event packet; the key presses it completes (usually none or one)."""
        payload = packet.payload
        if len(payload) < 4:
            self.malformed += 1
            return []
        event, flags = payload[0], payload[1]
        end = bool(flags & 0x80)
        duration = (payload[2] << 8) | payload[3]
        out: list[DtmfEvent | None] = []
        current = self._current
        if current is None or current.timestamp != packet.timestamp or current.event != event:
            # A new key press (§2.5.2.1: a new timestamp starts a new event).
            if current is not None and not current.reported:
                out.append(self._report(current, end_seen=False))
            current = self._current = _Current(packet.timestamp, event, duration, False)
        current.duration = max(current.duration, duration)
        if end and not current.reported:
            out.append(self._report(current, end_seen=True))
        return [e for e in out if e is not None]

    def audio(self, timestamp: int) -> list[DtmfEvent]:
        """The caller's audio reached ``timestamp``: report a key press whose end was lost."""
        current = self._current
        if current is None or current.reported:
            return []
        past = (timestamp - current.timestamp - current.duration) & 0xFFFFFFFF
        if self._end_lost_after <= past < 0x80000000:
            event = self._report(current, end_seen=False)
            return [event] if event is not None else []
        return []

    def _report(self, current: _Current, *, end_seen: bool) -> DtmfEvent | None:
        current.reported = True
        if current.event < len(EVENT_NAMES):
            digit = EVENT_NAMES[current.event]
        elif current.event == FLASH:
            digit = "flash"
        else:
            self.unknown_events += 1  # a tone or line event we did not offer (RFC 4734)
            return None
        return DtmfEvent(digit, current.duration * 1000 // self.clock_rate, end_seen)
