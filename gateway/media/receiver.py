"""What one call does with each datagram that reaches its RTP port. Sans-I/O.

``RtpReceiver.receive(data, source, now)`` applies the receive rules in order and returns what
the call must do with the datagram; no socket, no event loop, the time passed in:

1. Who sent it (``source.py``): the source we hear and send to passes at once; anyone else is
   decided by the strict-RTP guard (SRTP: only after the packet proved authentic, so a forged
   clear header cannot teach us a source).
2. The flood bucket: beyond twice the packet rate, after a burst of a second's worth, dropped
   (before the SRTP unprotect of the peer's packets: a flood then costs no crypto).
3. SRTP unprotect (``srtp.py``): a bad tag, a replay, junk or SRTCP is dropped and counted.
4. In order (``jitter.py``): the reorder buffer holds an early packet up to 60 ms for the
   missing ones; duplicates and late packets go no further.
5. By payload type: audio, with silence before it where the caller's timeline has a gap
   (``AudioClock``); RFC 4733 key presses (``dtmf.py``); comfort noise and anything else
   counted and dropped.

The answer is a sequence of outputs, in the order they happen: ``bytes`` (the caller's audio,
gap fills included), ``DtmfEvent``, ``SourceChanged``, a ``Signal``, or a ``Drop`` naming the
counter the datagram went to. The receiver also keeps the RTP timeout's clock and the hold
state (a caller that holds may send nothing), and owns ``RtpStats``.

The packet of nearly every call takes a short path, 50 times a second: a plain header (version
2, no padding, extension or CSRC), our audio payload type, the next in sequence from the
current source, no gap, no key press pending. It allocates nothing beyond the payload's bytes:
the answer is one list, reused (valid until the next call, like ``RtpSender.build``'s view),
and every drop is a constant tuple.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from .codecs import Codec
from .dtmf import DtmfDecoder, DtmfEvent
from .jitter import AudioClock, ReorderBuffer
from .rates import TELEPHONE_RATE
from .rtp import HEADER, HEADER_SIZE, RtpPacket, RtpParseError, parse_rtp
from .source import LEARN_PACKETS, Address, RtpSourceGuard, Verdict
from .srtp import SrtpDropped, SrtpSession, is_rtcp

__all__ = [
    "COMFORT_NOISE_PT",
    "Drop",
    "Lost",
    "Output",
    "RtpReceiver",
    "RtpStats",
    "Signal",
    "SourceChanged",
]

REORDER_MAX_DELAY_S = 0.06
COMFORT_NOISE_PT = 13  # RFC 3389; static payload type in RFC 3551
# Flood guard on the accepted source: packets beyond twice the ptime rate are dropped, after a
# burst of one second's worth (a network that held packets back releases them at once).
FLOOD_RATE_FACTOR = 2.0
FLOOD_BURST_S = 1.0


@dataclass(slots=True)
class RtpStats:
    packets_in: int = 0
    packets_out: int = 0
    malformed: int = 0
    foreign_source: int = 0  # packets from anyone but the peer (strangers, a source learning)
    sources_learned: int = 0  # peers learned from their packets (NAT, late offer) not the SDP
    comfort_noise: int = 0
    other_payload: int = 0  # payload types we did not negotiate
    dtmf_events: int = 0
    flood_dropped: int = 0  # packets from the caller beyond twice the packet rate
    late_sends: int = 0  # packets sent more than one ptime after their deadline
    skipped_sends: int = 0  # packets not sent at all after a long stall (timestamps jump)
    send_errors: int = 0  # the kernel refused a packet (socket buffer full, no route)
    srtp_auth_failures: int = 0  # SRTP/SRTCP packets whose tag did not verify (forged, bad key)
    srtp_replayed: int = 0  # SRTP packets seen already, or older than the replay window
    rtcp_dropped: int = 0  # authentic SRTCP on the RTP port (rtcp-mux): we use no RTCP


class Drop(enum.Enum):
    """Why a datagram went no further; the value is its counter in ``RtpStats``."""

    MALFORMED = "malformed"
    FOREIGN_SOURCE = "foreign_source"
    FLOOD = "flood_dropped"
    SRTP_AUTH = "srtp_auth_failures"
    SRTP_REPLAY = "srtp_replayed"
    RTCP = "rtcp_dropped"
    COMFORT_NOISE = "comfort_noise"
    OTHER_PAYLOAD = "other_payload"


class Signal(enum.Enum):
    FLOOD_STARTED = "flood_started"  # the first packet dropped as a flood: say so once
    REORDER_WAIT = "reorder_wait"  # packets wait for a gap: call ``poll`` at ``deadline``


@dataclass(frozen=True, slots=True)
class SourceChanged:
    """We now hear and send to ``addr``: learned from its packets (a NAT, a late offer), or
    the SDP's address taking back over from a learned one (``learned`` False)."""

    addr: Address
    learned: bool


@dataclass(frozen=True, slots=True)
class Lost:
    """``ticks`` RTP clock ticks of the caller's audio never came: a codec without a silence
    byte (G.722, Opus) conceals them, from the packet that follows (Opus FEC)."""

    ticks: int


Output = bytes | Lost | DtmfEvent | SourceChanged | Signal | Drop

_DROPS = {drop: (drop,) for drop in Drop}
_FLOOD_STARTED = (Drop.FLOOD, Signal.FLOOD_STARTED)


class RtpReceiver:
    """One call's receive rules: whose packets, how many, in what order, and what they carry."""

    def __init__(
        self,
        payload_type: int,
        remote: Address | None,
        *,
        ptime_ms: int = 20,
        dtmf_payload_type: int | None = None,
        silence: int | None = 0xFF,
        strict: bool = True,
        learn_packets: int = LEARN_PACKETS,
        srtp: SrtpSession | None = None,
        clock_rate: int = TELEPHONE_RATE,
        ticks: Callable[[bytes], int] | None = None,
        codec: Codec | None = None,
    ) -> None:
        """``silence``: the codec's silence byte that fills a gap (G.711), or None to report
        the gap as ``Lost``; ``ticks``: a payload's duration in clock ticks (None: its
        length, one byte a tick); ``codec``, when given, says all three (``codecs.py``)."""
        if codec is not None:
            silence, clock_rate, ticks = codec.silence, codec.clock_rate, codec.ticks
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.dtmf_payload_type = dtmf_payload_type
        # SRTP (RTP/SAVP): every packet is unprotected before anything reads more than its
        # clear header; None: plain RTP. Settable: a re-INVITE may re-key.
        self.srtp = srtp
        payload_types = [pt for pt in (payload_type, dtmf_payload_type) if pt is not None]
        self.guard = RtpSourceGuard(
            remote, payload_types, strict=strict, learn_packets=learn_packets
        )
        self.remote = self.guard.source  # whom we hear (and the shell sends to), kept at hand
        self.reorder = ReorderBuffer(REORDER_MAX_DELAY_S)
        self.audio_clock = AudioClock(clock_rate=clock_rate)
        self.dtmf = DtmfDecoder(clock_rate)
        self._fill = None if silence is None else _silence_run(silence, self.audio_clock.max_fill)
        self._ticks = ticks or len
        self._audio_ssrc: int | None = None
        packets_per_s = 1000 / ptime_ms
        self.flood_rate = FLOOD_RATE_FACTOR * packets_per_s  # packets a second, sustained
        self.flood_burst = self.flood_tokens = FLOOD_BURST_S * packets_per_s
        self._flood_at = 0.0
        self.last_rx = 0.0  # when the caller last sent an accepted packet (the RTP timeout)
        self.held = False  # the caller holds the call (RFC 3264 §8.4)
        self.stats = RtpStats()
        self._one: list[Output] = [b""]  # the short path's answer, reused

    # --- packets ------------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> Sequence[Output]:
        """One datagram from ``source`` (``recvfrom``'s address; IPv6's 4-tuple is fine) at
        ``now``; what to do, in order. The sequence is valid until the next call."""
        if len(source) != 2:
            source = (source[0], source[1])
        srtp = self.srtp
        if source != self.remote:
            return self._from_elsewhere(data, source, now)
        if srtp is None:
            self.guard.heard_at = now
        refill = (now - self._flood_at) * self.flood_rate
        tokens = min(self.flood_burst, self.flood_tokens + refill)
        self._flood_at = now
        if tokens < 1:
            return self._flooded(tokens)
        self.flood_tokens = tokens - 1
        if srtp is not None:
            # After the flood guard (it bounds the crypto work a flood costs), before anything
            # reads the packet; only an authentic packet keeps the source alive.
            clear = self._unprotect(srtp, data)
            if isinstance(clear, Drop):
                return _DROPS[clear]
            data = clear
            self.guard.heard_at = now
        self.last_rx = now
        if len(data) > HEADER_SIZE and data[0] == 0x80 and (data[1] & 0x7F) == self.payload_type:
            _, _, sequence, timestamp, ssrc = HEADER.unpack_from(data)
            if ssrc == self._audio_ssrc and self.reorder.take_in_order(sequence, ssrc):
                self.stats.packets_in += 1
                payload = data[HEADER_SIZE:]
                gap = self.audio_clock.gap(timestamp, self._ticks(payload))
                if gap or self.dtmf.pending:
                    return self._audio_after_gap(payload, timestamp, gap)
                one = self._one
                one[0] = payload
                return one
        return self._parse(data, now, [])

    def poll(self, now: float) -> Sequence[Output]:
        """The reorder deadline passed: what waited behind the gap, the gap as silence."""
        out: list[Output] = []
        for ready in self.reorder.poll(now):
            self._dispatch(ready, out)
        if self.reorder.waiting:
            out.append(Signal.REORDER_WAIT)
        return out

    @property
    def deadline(self) -> float | None:
        """When ``poll`` is due (None: no packet waits for a gap)."""
        return self.reorder.deadline

    def _from_elsewhere(self, data: bytes, source: Address, now: float) -> Sequence[Output]:
        """A packet from an address we do not send to: the guard decides (``source.py``)."""
        srtp = self.srtp
        if srtp is not None:
            # Only authentic packets may teach us a new source (a NAT's): the clear header of
            # a forged one would otherwise let a stranger take the media.
            clear = self._unprotect(srtp, data)
            if isinstance(clear, Drop):
                return _DROPS[clear]
            data = clear
        header: tuple[int, int, int] | None
        if len(data) > HEADER_SIZE and data[0] == 0x80:  # a plain header: nothing else to check
            _, second, sequence, _, ssrc = HEADER.unpack_from(data)
            header = (second & 0x7F, sequence, ssrc)
        else:
            try:
                packet = parse_rtp(data)
            except RtpParseError:
                header = None  # junk never counts towards learning a source
            else:
                header = (packet.payload_type, packet.sequence, packet.ssrc)
        verdict = self.guard.check(source, header, now)
        if verdict is Verdict.DROP:
            self.stats.foreign_source += 1
            return _DROPS[Drop.FOREIGN_SOURCE]
        out: list[Output] = []
        if self.guard.source != self.remote:
            self.remote = self.guard.source
            learned = verdict is Verdict.LEARNED
            self.stats.sources_learned += learned
            out.append(SourceChanged(source, learned))
        refill = (now - self._flood_at) * self.flood_rate
        tokens = min(self.flood_burst, self.flood_tokens + refill)
        self._flood_at = now
        if tokens < 1:
            out.extend(self._flooded(tokens))
            return out
        self.flood_tokens = tokens - 1
        self.last_rx = now
        return self._parse(data, now, out)

    def _flooded(self, tokens: float) -> Sequence[Output]:
        self.flood_tokens = tokens
        self.stats.flood_dropped += 1
        return _FLOOD_STARTED if self.stats.flood_dropped == 1 else _DROPS[Drop.FLOOD]

    def _unprotect(self, srtp: SrtpSession, data: bytes) -> bytes | Drop:
        """The RTP inside an SRTP packet, or why it was dropped (counted): a bad tag, a
        replay, junk, or SRTCP, which we do not use."""
        try:
            if is_rtcp(data):
                srtp.unprotect_rtcp(data)
                drop = Drop.RTCP
            else:
                return srtp.unprotect(data)
        except SrtpDropped as exc:
            if exc.kind == "replay":
                drop = Drop.SRTP_REPLAY
            elif exc.kind == "auth":
                drop = Drop.SRTP_AUTH
            else:
                drop = Drop.MALFORMED
        self._count(drop)
        return drop

    def _count(self, drop: Drop) -> None:
        stats = self.stats
        setattr(stats, drop.value, getattr(stats, drop.value) + 1)

    def _parse(self, data: bytes, now: float, out: list[Output]) -> Sequence[Output]:
        """The general case: any header, then the reorder buffer."""
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            self.stats.malformed += 1
            out.append(Drop.MALFORMED)
            return out
        self.stats.packets_in += 1
        reorder = self.reorder
        for ready in reorder.push(packet, now):
            self._dispatch(ready, out)
        if reorder.waiting:
            out.append(Signal.REORDER_WAIT)
        return out

    def _dispatch(self, packet: RtpPacket, out: list[Output]) -> None:
        pt = packet.payload_type
        if pt == self.payload_type:
            if packet.ssrc != self._audio_ssrc:
                self._audio_ssrc = packet.ssrc
                self.audio_clock.reset()
            self._audio(bytes(packet.payload), packet.timestamp, out)
        elif pt == self.dtmf_payload_type:
            self._keys(self.dtmf.push(packet), out)
        elif pt == COMFORT_NOISE_PT:
            self.stats.comfort_noise += 1
            out.append(Drop.COMFORT_NOISE)
        else:
            self.stats.other_payload += 1
            out.append(Drop.OTHER_PAYLOAD)

    def _audio_after_gap(self, payload: bytes, timestamp: int, gap: int) -> list[Output]:
        """The short path's packet after a gap, or with a key press pending (``_audio`` once
        the clock has given the gap)."""
        out: list[Output] = []
        if gap:
            out.append(self._fill[:gap] if self._fill is not None else Lost(gap))
        if self.dtmf.pending:
            self._keys(self.dtmf.audio(timestamp), out)
        out.append(payload)
        return out

    def _audio(self, payload: bytes, timestamp: int, out: list[Output]) -> None:
        """The caller's audio, in order: silence first where the timeline has a gap."""
        gap = self.audio_clock.gap(timestamp, self._ticks(payload))
        if gap:
            out.append(self._fill[:gap] if self._fill is not None else Lost(gap))
        if self.dtmf.pending:
            self._keys(self.dtmf.audio(timestamp), out)
        out.append(payload)

    def _keys(self, events: list[DtmfEvent], out: list[Output]) -> None:
        self.stats.dtmf_events += len(events)
        out.extend(events)

    # --- where, hold, timeout -----------------------------------------------------------------

    def moved(self, addr: Address) -> None:
        """The caller's media moved (new c=/m=): heard at once; any other address must be
        learned again, under the same rules."""
        self.guard.moved(addr)
        self.remote = self.guard.source

    def hold(self, held: bool, now: float) -> bool:
        """Hold or resume (RFC 3264 §8.4); True when that changes anything. The RTP timeout
        waits for the resume and counts from it (a holding caller may send nothing)."""
        if self.held and not held:
            self.last_rx = now
        changed = self.held != held
        self.held = held
        return changed

    def timeout_from(self, now: float) -> None:
        """The RTP timeout counts from ``now`` at the earliest (the call's answer)."""
        self.last_rx = max(self.last_rx, now)

    def silent_for(self, now: float) -> float | None:
        """How long the caller has sent nothing, or None while it holds the call."""
        return None if self.held else now - self.last_rx

    def summary(self) -> dict[str, int]:
        """Counters for the end-of-call log line."""
        counts = {**asdict(self.stats), **asdict(self.reorder.stats)}
        counts.pop("received")  # = packets_in
        counts["filled_ms"] = self.audio_clock.filled_samples // (self.clock_rate // 1000)
        return counts

    def release(self) -> None:
        """The call is over: hold no payload of it."""
        self._one[0] = b""


@functools.cache
def _silence_run(byte: int, samples: int) -> bytes:
    """The longest gap fill, shared by every call: a slice of it fills any gap."""
    return bytes([byte]) * samples
