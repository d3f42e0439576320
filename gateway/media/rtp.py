"""RTP packets (RFC 3550 §5.1), sans-I/O: parse what arrives, build what leaves.

Header layout (RFC 3550 §5.1), 12 bytes, network byte order::

     0                   1                   2                   3
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |           synchronization source (SSRC) identifier            |
    |            contributing source (CSRC) identifiers  (CC x 32)  |
    | extension: profile (16) | length in 32-bit words (16) | data  |   if X (§5.3.1)
    | payload ...                           | padding ... | count  |   if P
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from .native import dsp

__all__ = ["MAX_PACKET_SIZE", "RtpPacket", "RtpParseError", "RtpSender", "parse_rtp"]

HEADER_SIZE = 12
# A 1500-byte Ethernet MTU less IPv6 (40) and UDP (8) headers: no IP fragmentation, ever.
# Leaves 1440 bytes of payload, 180 ms of G.711.
MAX_PACKET_SIZE = 1452

_BYTES = (bytes, bytearray)  # not ``bytes | bytearray``: a union built at every call
HEADER = struct.Struct("!BBHII")  # the fixed header: V/P/X/CC, M/PT, sequence, timestamp, SSRC
_SEQ_TS_SSRC = struct.Struct("!HII")
_EXT_HEADER = struct.Struct("!HH")
_CSRCS = tuple(struct.Struct(f"!{n}I") for n in range(16))


class RtpParseError(ValueError):
    """The datagram is not a well-formed RTP packet (RFC 3550 §5.1, Appendix A.1 checks)."""


@dataclass(slots=True)
class RtpPacket:
    """One parsed packet; ``payload`` is a zero-copy view into the datagram it came from."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes | memoryview
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile-defined 16 bits, data)


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse one datagram; RtpParseError (and nothing else) for anything malformed.

    The payload is a view, not a copy: keep ``data`` unchanged while the packet is in use (the
    ``bytes`` that asyncio hands to ``datagram_received`` never change).
    """
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = memoryview(view.tobytes())  # e.g. a view of int16 or of chars: take its raw bytes
    size = len(view)
    if size < HEADER_SIZE:
        raise RtpParseError(f"packet of {size} bytes is shorter than the 12-byte RTP header")
    first, second = view[0], view[1]
    version = first >> 6
    if version != 2:
        raise RtpParseError(f"RTP version {version}, expected 2")
    sequence, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(view, 2)

    offset = HEADER_SIZE
    count = first & 0x0F
    csrcs: tuple[int, ...] = ()
    if count:
        if offset + 4 * count > size:
            raise RtpParseError(f"{count} CSRCs overrun a {size}-byte packet")
        csrcs = _CSRCS[count].unpack_from(view, offset)
        offset += 4 * count

    extension = None
    if first & 0x10:  # RFC 3550 §5.3.1: a 4-byte header, then `length` 32-bit words
        if offset + 4 > size:
            raise RtpParseError("header extension overruns the packet")
        profile, words = _EXT_HEADER.unpack_from(view, offset)
        offset += 4
        if offset + 4 * words > size:
            raise RtpParseError(f"header extension of {words} words overruns the packet")
        extension = (profile, view[offset : offset + 4 * words].tobytes())
        offset += 4 * words

    end = size
    if first & 0x20:  # §5.1: the last octet counts the padding octets, itself included
        padding = view[size - 1]
        if padding == 0:
            raise RtpParseError("padding bit set but padding count is 0")
        if padding > size - offset:
            raise RtpParseError(f"padding count {padding} exceeds the {size - offset} bytes left")
        end = size - padding

    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        marker=bool(second & 0x80),
        payload=view[offset:end],
        csrcs=csrcs,
        extension=extension,
    )


class RtpSender:
    """Builds outbound packets: one SSRC, sequence and timestamp that continue across silence.

    Packets are written into one buffer owned by the sender, so building allocates nothing
    but the returned view.  That view is valid only until the next ``build``/``build_event``:
    hand it straight to ``transport.sendto``, which sends it at once or, when it has to queue,
    copies it first (CPython ``selector_events``: "Ensure that what we buffer is immutable").
    """

    __slots__ = ("_buf", "_pt", "_seq", "_spp", "_ssrc", "_ts", "_view")

    def __init__(
        self,
        payload_type: int,
        samples_per_packet: int = 160,
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        _check_range("payload_type", payload_type, 0, 0x7F)
        _check_range("samples_per_packet", samples_per_packet, 1, 0xFFFFFFFF)
        self._pt = payload_type
        self._spp = samples_per_packet
        # RFC 3550 §5.1: random initial sequence number and timestamp, against known-plaintext
        # attacks on encryption; §8.1: a random SSRC, so that sources are unlikely to collide.
        self._ssrc = _initial("ssrc", ssrc, 32)
        self._seq = _initial("sequence", sequence, 16)
        self._ts = _initial("timestamp", timestamp, 32)
        self._buf = bytearray(MAX_PACKET_SIZE)
        self._view = memoryview(self._buf)

    @property
    def payload_type(self) -> int:
        return self._pt

    @property
    def samples_per_packet(self) -> int:
        return self._spp

    @property
    def ssrc(self) -> int:
        return self._ssrc

    @property
    def sequence(self) -> int:
        """The sequence number the next packet will carry."""
        return self._seq

    @sequence.setter
    def sequence(self, value: int) -> None:
        self._seq = value & 0xFFFF

    @property
    def timestamp(self) -> int:
        """The timestamp the next ``build`` will carry (set it to skip time, mod 2**32)."""
        return self._ts

    @timestamp.setter
    def timestamp(self, value: int) -> None:
        self._ts = value & 0xFFFFFFFF

    def build(self, payload: bytes | bytearray | memoryview, *, marker: bool = False) -> memoryview:
        """The next media packet; advances sequence by 1 and timestamp by one packet's samples."""
        packet = self._write(payload, marker, self._pt, self._ts)
        self._ts = (self._ts + self._spp) & 0xFFFFFFFF
        return packet

    def build_event(
        self, payload: bytes, *, marker: bool, timestamp: int, payload_type: int
    ) -> memoryview:
        """A packet with its own payload type and timestamp (RFC 4733 events keep the event's
        start timestamp across packets); advances the sequence only, which media shares."""
        _check_range("payload_type", payload_type, 0, 0x7F)
        _check_range("timestamp", timestamp, 0, 0xFFFFFFFF)
        return self._write(payload, marker, payload_type, timestamp)

    def send(
        self, fd: int, dest: bytes, payload: object, table: object | None, marker: bool
    ) -> int:
        """The next media packet built and sent to ``dest`` (``_dsp.sockaddr``) on ``fd`` in
        one C call (``_dsp.send_rtp``, native.py: only where the module is built): no packet
        object, no address parsed. ``table``: G.711's encode table, ``payload`` then the int16
        frame it encodes; None: ``payload`` is the codec's bytes. Advances as ``build``
        does, sent or not; returns 0, or the errno of a refused send. Raises ValueError or
        BufferError, advancing nothing, for a payload it cannot take (too large, a frame
        not contiguous int16)."""
        assert dsp is not None
        error: int = dsp.send_rtp(
            fd, dest, self._pt | (0x80 if marker else 0), self._seq, self._ts, self._ssrc,
            payload, table,
        )  # fmt: skip
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + self._spp) & 0xFFFFFFFF
        return error

    def _write(
        self, payload: bytes | bytearray | memoryview, marker: bool, pt: int, ts: int
    ) -> memoryview:
        if not isinstance(payload, _BYTES):
            payload = memoryview(payload).cast("B")
        end = HEADER_SIZE + len(payload)
        if end > MAX_PACKET_SIZE:
            raise ValueError(
                f"payload of {len(payload)} bytes exceeds {MAX_PACKET_SIZE - HEADER_SIZE}"
            )
        HEADER.pack_into(
            self._buf, 0, 0x80, pt | (0x80 if marker else 0), self._seq, ts, self._ssrc
        )
        self._view[HEADER_SIZE:end] = payload
        self._seq = (self._seq + 1) & 0xFFFF
        return self._view[:end]


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


def _initial(name: str, value: int | None, bits: int) -> int:
    if value is None:
        return secrets.randbits(bits)
    _check_range(name, value, 0, (1 << bits) - 1)
    return value
