"""Whose RTP a call hears, and where it sends its own: strict RTP, sans-I/O.

Anyone on the network can send a datagram to a call's RTP port. Latching on the first packet
from anywhere (plain symmetric RTP) lets one junk byte, sent before the caller's first packet,
take the call: the attacker's audio reaches the model and ours goes to the attacker. The rules
here are those of Asterisk's ``strictrtp`` and rtpengine's learning:

- The address the SDP names (signalling said so) is heard at once, always, and becomes where
  we send again whenever it sends.
- Any other address (the caller behind a NAT that rewrote its port) is learned only after
  ``learn_packets`` consecutive valid RTP packets from it: version 2, a negotiated payload
  type (audio or telephone-event), one SSRC, sequence numbers one after the other. Junk, a
  wrong payload type or a break in the sequence starts its count again; while it counts, its
  packets are dropped.
- And never while the current source is sending: only when it has sent nothing for
  ``quiet_s`` (or never sent at all, as an SDP address behind a NAT never does).
- Once a source is learned, every other one is dropped, the SDP address excepted.

With ``strict`` off, the old symmetric latching: the first valid RTP packet from anywhere is
heard and answered, every other source dropped until the SDP changes. Junk never latches.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable

Address = tuple[str, int]
Header = tuple[int, int, int]  # payload type, sequence number, SSRC of a well-formed packet

LEARN_PACKETS = 4  # Asterisk's default probation
LEARN_QUIET_S = 1.0
# Addresses learning at once. A full table loses its oldest entry of a single packet: to push
# a caller's first packet out before its second, 20 ms later, a sprayer would need 64 new
# source addresses in those 20 ms; a run of two or more is never pushed out by single packets.
MAX_CANDIDATES = 64


class Verdict(enum.Enum):
    ACCEPT = "accept"  # from the source (or from the SDP address, which is the source again)
    LEARNED = "learned"  # this packet's sender has just become the source
    DROP = "drop"  # from anyone else: junk, a stranger, or a candidate still learning


class _Candidate:
    __slots__ = ("count", "next_seq", "ssrc")

    def __init__(self, seq: int, ssrc: int) -> None:
        self.count = 0
        self.next_seq = self.ssrc = 0
        self.restart(seq, ssrc)

    def restart(self, seq: int, ssrc: int) -> None:
        """A run of one packet: the first, or the first after a break."""
        self.count = 1
        self.next_seq = (seq + 1) & 0xFFFF
        self.ssrc = ssrc


class RtpSourceGuard:
    """Decides, packet by packet, whether a call's RTP comes from its peer.

    ``source`` is the address heard and sent to (None: nobody yet). The stream compares a
    packet's address with it first and, when equal, only stamps ``heard_at``; everything else
    goes through ``check``.
    """

    __slots__ = (
        "_candidates",
        "_latched",
        "_payload_types",
        "heard_at",
        "learn_packets",
        "learned",
        "quiet_s",
        "sdp",
        "source",
        "strict",
    )

    def __init__(
        self,
        sdp: Address | None,
        payload_types: Iterable[int],
        *,
        strict: bool = True,
        learn_packets: int = LEARN_PACKETS,
        quiet_s: float = LEARN_QUIET_S,
    ) -> None:
        if learn_packets < 1:
            raise ValueError(f"learn_packets must be at least 1, got {learn_packets}")
        self._payload_types = frozenset(payload_types)
        self.strict = strict
        self.learn_packets = learn_packets
        self.quiet_s = quiet_s
        self.learned = 0  # sources learned from their packets (NAT, or the first, late offer)
        self._candidates: dict[Address, _Candidate] = {}
        self.sdp: Address | None = None
        self.source: Address | None = None
        self.heard_at: float | None = None  # when the source last sent; None: never
        self._latched = False
        self.moved(sdp)

    def moved(self, sdp: Address | None) -> None:
        """The SDP names a new address (re-INVITE, the ACK's late answer): heard at once from
        now on, sent to at once; whatever was learned before must be learned again."""
        self.sdp = _normal(sdp) if sdp is not None else None
        self.source = self.sdp
        self.heard_at = None
        self._candidates.clear()
        self._latched = False

    def check(self, addr: Address, header: Header | None, now: float) -> Verdict:
        """One packet from ``addr``; ``header`` is None when it is not well-formed RTP."""
        if addr == self.source:
            self.heard_at = now
            return Verdict.ACCEPT
        if not self.strict:
            return self._latch(addr, header, now)
        if addr == self.sdp:
            # Signalling named it: it takes back over from a learned address at once.
            self.source, self.heard_at = addr, now
            self._candidates.clear()
            return Verdict.ACCEPT
        return self._learn(addr, header, now)

    def _learn(self, addr: Address, header: Header | None, now: float) -> Verdict:
        candidates = self._candidates
        if header is None or header[0] not in self._payload_types:
            candidates.pop(addr, None)  # not consecutive valid packets any more
            return Verdict.DROP
        _, seq, ssrc = header
        candidate = candidates.get(addr)
        if candidate is not None and candidate.ssrc == ssrc and candidate.next_seq == seq:
            candidate.count += 1
            candidate.next_seq = (seq + 1) & 0xFFFF
        elif candidate is not None:
            candidate.restart(seq, ssrc)
        else:
            if len(candidates) >= MAX_CANDIDATES:
                del candidates[_weakest(candidates)]
            candidate = candidates[addr] = _Candidate(seq, ssrc)
        quiet = self.heard_at is None or now - self.heard_at >= self.quiet_s
        if candidate.count < self.learn_packets or not quiet:
            return Verdict.DROP
        self.source, self.heard_at = addr, now
        self.learned += 1
        candidates.clear()
        return Verdict.LEARNED

    def _latch(self, addr: Address, header: Header | None, now: float) -> Verdict:
        """strict off: the first valid packet from anywhere latches, once per SDP (a packet
        from the SDP's address, heard on the stream's fast path, latches it there)."""
        latched = self._latched or self.heard_at is not None
        if latched or header is None or header[0] not in self._payload_types:
            return Verdict.DROP
        self.source, self.heard_at = addr, now
        self._latched = True
        self.learned += 1
        return Verdict.LEARNED


def _weakest(candidates: dict[Address, _Candidate]) -> Address:
    """The oldest candidate of one packet (random RTP never gets further), else the least
    advanced."""
    for addr, candidate in candidates.items():
        if candidate.count == 1:
            return addr
    return min(candidates, key=lambda addr: candidates[addr].count)


def _normal(addr: Address) -> Address:
    """The SDP's address as ``recvfrom`` spells the sender's (IPv6 compressed, lower case)."""
    host, port = addr
    try:
        host = ipaddress.ip_address(host).compressed
    except ValueError:
        pass  # a host name: it will never equal a packet's address, so it must be learned
    return (host, port)
