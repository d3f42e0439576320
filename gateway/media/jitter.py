"""Inbound RTP put back in order, and the caller's audio kept on its own clock. Sans-I/O.

Two small objects, both fed by the socket layer and both free of I/O and of clocks of their own
(the caller passes ``now``):

* ``ReorderBuffer`` (sequence numbers): packets that arrive in order go straight through, with
  no added latency; a packet that arrives early waits for the missing ones at most
  ``max_delay_s`` (60 ms), then the missing ones are declared lost.  Duplicates and packets
  that come after their turn are dropped; sequence numbers wrap; a new SSRC starts a new
  sequence.  Every payload type goes through it, because RFC 4733 events share the audio's
  sequence space (RFC 4733 §2.1): filtering before reordering would make every DTMF packet
  look like a lost audio packet.
* ``AudioClock`` (timestamps): how much silence to insert before an audio packet so that the
  model hears the caller's timeline as it was, whatever made the gap: lost packets, DTMF sent
  in place of audio, or the caller's silence suppression (comfort noise, then nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from .rtp import RtpPacket

__all__ = ["AudioClock", "ReorderBuffer", "ReorderStats"]

# RFC 3550 Appendix A.1: a jump ahead of more than MAX_DROPOUT, or back by more than
# MAX_MISORDER, is not reordering but a source that restarted its sequence; it is believed once
# two packets in a row confirm it.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MAX_HELD = 64  # packets waiting for a gap to close; more than that and the gap is given up


@dataclass(slots=True)
class ReorderStats:
    received: int = 0
    delivered: int = 0
    reordered: int = 0  # packets that closed a gap in time
    lost: int = 0  # sequence numbers never received within max_delay_s
    late: int = 0  # arrived after their turn (given up on, or already delivered)
    duplicates: int = 0  # a second copy of a packet still waiting
    restarts: int = 0  # sequence restarts confirmed by two packets (RFC 3550 A.1)
    ssrc_changes: int = 0


def _seq_delta(seq: int, expected: int) -> int:
    """``seq - expected`` modulo 2**16, as a signed number in [-32768, 32767]."""
    return ((seq - expected + 0x8000) & 0xFFFF) - 0x8000


class ReorderBuffer:
    """Delivers one source's packets in sequence order, waiting at most ``max_delay_s``."""

    def __init__(self, max_delay_s: float = 0.06) -> None:
        self.max_delay_s = max_delay_s
        self.stats = ReorderStats()
        self._ssrc: int | None = None
        self._next = 0  # the sequence number due next
        self._held: dict[int, tuple[RtpPacket, float]] = {}
        self._probation: int | None = None  # the sequence that would confirm a restart

    @property
    def waiting(self) -> bool:
        """Packets wait for a gap to close (then ``deadline`` says until when)."""
        return bool(self._held)

    @property
    def deadline(self) -> float | None:
        """When ``poll`` must be called to give up on a gap (None: nothing is waiting)."""
        if not self._held:
            return None
        return min(arrived for _, arrived in self._held.values()) + self.max_delay_s

    def take_in_order(self, sequence: int, ssrc: int) -> bool:
        """The receive path's shortcut: True (and counted as delivered) when this packet is
        the one due next from the current source with nothing waiting, which is what ``push``
        would deliver at once; False, nothing changed, for anything else."""
        if sequence != self._next or ssrc != self._ssrc or self._held:
            return False
        stats = self.stats
        stats.received += 1
        stats.delivered += 1
        self._next = (sequence + 1) & 0xFFFF
        return True

    def push(self, packet: RtpPacket, now: float) -> list[RtpPacket]:
        """One packet in; the packets now deliverable, in order (often just this one)."""
        if self.take_in_order(packet.sequence, packet.ssrc):
            return [packet]  # the common case, in order with nothing waiting: straight through
        self.stats.received += 1
        out: list[RtpPacket] = []
        if packet.ssrc != self._ssrc:
            # A new source (a transfer, a media server switch): what the old one left waiting
            # goes out first, then the new one starts its own sequence.
            if self._ssrc is not None:
                self.stats.ssrc_changes += 1
                self._release_all(out)
            self._restart(packet)
        delta = _seq_delta(packet.sequence, self._next)
        if delta == 0:
            if self._held:
                self.stats.reordered += 1
            self._deliver(packet, out)
            self._drain(out)
        elif -MAX_MISORDER <= delta < 0:
            self.stats.late += 1
        elif 0 < delta <= MAX_DROPOUT:
            if packet.sequence in self._held:
                self.stats.duplicates += 1
            else:
                self._held[packet.sequence] = (packet, now)
                if len(self._held) > MAX_HELD:
                    self._skip_gap(out)
            self._give_up(now, out)
        elif packet.sequence == self._probation:
            self.stats.restarts += 1
            self._release_all(out)
            self._restart(packet)
            self._deliver(packet, out)
        else:
            self._probation = (packet.sequence + 1) & 0xFFFF
            self.stats.late += 1
        return out

    def poll(self, now: float) -> list[RtpPacket]:
        """Give up on gaps that waited ``max_delay_s``; the packets that can now go out."""
        out: list[RtpPacket] = []
        self._give_up(now, out)
        return out

    def _restart(self, packet: RtpPacket) -> None:
        self._ssrc = packet.ssrc
        self._next = packet.sequence
        self._probation = None

    def _deliver(self, packet: RtpPacket, out: list[RtpPacket]) -> None:
        out.append(packet)
        self.stats.delivered += 1
        self._next = (packet.sequence + 1) & 0xFFFF

    def _drain(self, out: list[RtpPacket]) -> None:
        held = self._held
        while held and self._next in held:
            self._deliver(held.pop(self._next)[0], out)

    def _skip_gap(self, out: list[RtpPacket]) -> None:
        """Declare the missing packets before the first one held lost, and move on."""
        first = min(self._held, key=lambda seq: _seq_delta(seq, self._next))
        self.stats.lost += _seq_delta(first, self._next)
        self._next = first
        self._drain(out)

    def _give_up(self, now: float, out: list[RtpPacket]) -> None:
        while (deadline := self.deadline) is not None and now >= deadline:
            self._skip_gap(out)

    def _release_all(self, out: list[RtpPacket]) -> None:
        while self._held:
            self._skip_gap(out)


class AudioClock:
    """Silence to insert before each audio packet, from the RTP timestamps (RFC 3550 §5.1).

    A gap longer than ``max_fill_s`` is not filled: that is a hold, an outage or a sender that
    reset its clock, and minutes of silence delivered late tell the model nothing.
    """

    def __init__(self, max_fill_s: float = 2.0, clock_rate: int = 8000) -> None:
        self.max_fill = int(max_fill_s * clock_rate)
        self.filled_samples = 0
        self.discontinuities = 0
        self._expected: int | None = None  # timestamp where the next audio should start

    def gap(self, timestamp: int, samples: int) -> int:
        """Samples of silence due before a packet of ``samples`` that starts at ``timestamp``."""
        expected, self._expected = self._expected, (timestamp + samples) & 0xFFFFFFFF
        if expected is None:
            return 0
        gap = ((timestamp - expected + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if gap <= 0:
            return 0  # on time (0), or overlapping what was played: nothing to fill
        if gap > self.max_fill:
            self.discontinuities += 1
            return 0
        self.filled_samples += gap
        return gap

    def reset(self) -> None:
        """A new source: its timestamps start from a random origin (RFC 3550 §5.1)."""
        self._expected = None
