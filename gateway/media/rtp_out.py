"""A call's packets on their way out: the RTP clock, SRTP and the socket, in one place.

Every packet a call sends goes through ``RtpOut`` (the pacer's audio and silence, RFC 4733 key
events), which keeps the sender's clock running whether or not a packet can leave: no socket
yet, no peer, on hold (RFC 3550 §5.1: timestamps follow the clock, not what was sent). A send
the kernel refuses is counted and dropped, never queued: a packet sent late is worth nothing.

With the C module (``native.py``) a plain RTP packet is built and sent in one call
(``_dsp.send_rtp``), the peer kept as the kernel's sockaddr (made once when it changes, not
parsed from a tuple at every packet) and G.711 encoded straight into the packet: a G.711
packet 4.1 us against 5.5 through ``encode``, ``RtpSender.build`` and ``sendto``, silence 3.6
against 4.7 (``bench_frame.py``'s ``pacer_packet``: on loopback, the kernel's part included).
SRTP, key events and an install without the module take Python's path.
"""

from __future__ import annotations

import contextlib
import socket

import numpy as np

from .codecs import Codec
from .native import dsp
from .receiver import RtpStats
from .rtp import RtpSender
from .source import Address
from .srtp import SrtpSession

__all__ = ["RtpOut"]


class RtpOut:
    """One call's sending side: ``frame`` and ``payload`` per ptime, ``event`` for a key."""

    def __init__(self, codec: Codec, payload_type: int, frame_ticks: int, stats: RtpStats) -> None:
        self.codec = codec
        self.sender = RtpSender(payload_type, frame_ticks)
        self.stats = stats
        self.srtp: SrtpSession | None = None  # RTP/SAVP: every packet protected last
        self.held = False  # the call is on hold: nothing leaves, the clock runs on
        self.remote: Address | None = None
        self._dest: bytes | None = None  # ``remote`` as the kernel's sockaddr (native sends)
        self._sock: socket.socket | None = None
        self._fd = -1
        # G.711 with the C module: encoded as the packet is built (``_dsp.send_rtp``).
        self._table = getattr(codec, "encode_table", None) if dsp is not None else None

    def attach(self, sock: socket.socket) -> None:
        self._sock, self._fd = sock, sock.fileno()

    def detach(self) -> None:
        """The socket is closing: packets from now on only move the clock."""
        self._sock, self._fd = None, -1

    def to(self, addr: Address | None) -> None:
        """Where packets go from now on (the receiver's source: ``source.py``)."""
        self.remote, self._dest = addr, None
        if dsp is not None and addr is not None:
            with contextlib.suppress(ValueError):  # numeric always (sdp.py): never a lookup
                self._dest = dsp.sockaddr(addr[0], addr[1])

    def frame(self, frame: np.ndarray, marker: bool) -> None:
        """One ptime of PCM, in the call's codec."""
        if self._table is not None and self._native():
            try:
                self._sent(self.sender.send(self._fd, self._dest, frame, self._table, marker))
                return
            except (TypeError, ValueError, BufferError):
                pass  # not a contiguous int16 frame: the codec's encode says what is wrong
        self.payload(self.codec.encode(frame), marker)

    def payload(self, payload: bytes, marker: bool = False) -> None:
        """One ptime of coded audio (silence included)."""
        if self._native():
            self._sent(self.sender.send(self._fd, self._dest, payload, None, marker))
            return
        packet = self.sender.build(payload, marker=marker)
        if self._sock is not None and self.remote is not None and not self.held:
            self._transmit(packet)

    def event(self, payload: bytes, marker: bool, timestamp: int, payload_type: int) -> None:
        """An RFC 4733 key event in place of this ptime's audio: the event's own timestamp,
        and the ptime passes as audio would."""
        sender = self.sender
        packet = sender.build_event(
            payload, marker=marker, timestamp=timestamp, payload_type=payload_type
        )
        sender.timestamp += sender.samples_per_packet
        if self._sock is not None and self.remote is not None and not self.held:
            self._transmit(packet)

    def skip(self, packets: int) -> None:
        """Packets lost to a stall: the timestamp moves on with the clock (RFC 3550 §5.1)."""
        self.sender.timestamp += packets * self.sender.samples_per_packet

    def _native(self) -> bool:
        """Plain RTP to a peer, a socket, not on hold: the C module sends it."""
        return self._dest is not None and self.srtp is None and self._fd >= 0 and not self.held

    def _sent(self, error: int) -> None:
        if error:
            self.stats.send_errors += 1
        else:
            self.stats.packets_out += 1

    def _transmit(self, packet: memoryview) -> None:
        assert self._sock is not None and self.remote is not None
        try:
            if self.srtp is not None:
                self._sock.sendto(self.srtp.protect(packet), self.remote)
            else:
                self._sock.sendto(packet, self.remote)
        except OSError:
            self.stats.send_errors += 1
            return
        self.stats.packets_out += 1
