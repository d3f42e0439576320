"""A scriptable RTP caller for media tests: SIPp does the signalling, this socket the media.

SIPp offers this socket's port in its SDP (``uac_until_bye``), so the gateway's RTP comes
here; this peer sends G.711 and RFC 4733 packets, reordered, duplicated or dropped on purpose,
on a 20 ms schedule, and keeps every packet it receives.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.media.rtp import RtpPacket, RtpSender, parse_rtp

from .peers import LOOPBACK
from .scenarios import answer_bye, invite_expecting

# SIPp UAC: after scenarios.invite_expecting's INVITE (answered 200) and ACK, either wait for
# the gateway's BYE (a test ends the call by stopping the gateway) or hang up after a pause.
OFFER = (
    "0 101",
    ["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20"],
)

_BYE_AFTER = """  <pause milliseconds="{ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>"""


def uac_until_bye(path: Path, media_port: int | str, hangup_after_ms: int | None = None) -> Path:
    """A call that offers ``media_port`` (or a SIPp keyword such as ``[field0]``) in its SDP,
    so that the gateway's RTP goes to a socket of the test's own rather than to SIPp."""
    end = answer_bye() if hangup_after_ms is None else _BYE_AFTER.format(ms=hangup_after_ms)
    xml = invite_expecting(path, 200, offer=OFFER).read_text()
    xml = xml.replace("m=audio [media_port] ", f"m=audio {media_port} ", 1)
    path.write_text(xml.replace("</scenario>", f"{end}\n</scenario>"))
    return path


def dtmf_packets(sender: RtpSender, digit: int, timestamp: int, ms: int = 100) -> list[bytes]:
    """One key press as a phone sends it (RFC 4733 §2.5.1): updates every 20 ms, marker on the
    first, then the end packet three times; all with the event's start timestamp."""
    samples = ms * 8
    updates = [(duration, False) for duration in range(160, samples, 160)]
    packets = []
    for i, (duration, end) in enumerate([*updates, *[(samples, True)] * 3]):
        payload = struct.pack("!BBH", digit, (0x80 if end else 0) | 10, duration)
        packets.append(
            bytes(sender.build_event(payload, marker=i == 0, timestamp=timestamp, payload_type=101))
        )
    return packets


@dataclass
class RtpPeer(asyncio.DatagramProtocol):
    """A loopback socket that sends on a 20 ms schedule and records what it receives."""

    received: list[tuple[float, RtpPacket]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    port: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(cls) -> RtpPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=(LOOPBACK, 0))
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((asyncio.get_running_loop().time(), parse_rtp(data)))
        self._arrived.set()

    async def play(
        self, dest: tuple[str, int], packets: Iterable[bytes | None], ptime_s: float = 0.02
    ) -> None:
        """Send one item per ptime on an absolute schedule (None: a tick with nothing sent)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, data in enumerate(packets):
            delay = start + i * ptime_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing a real-time stream, not synchronisation
            if data is not None and self.transport is not None:
                self.transport.sendto(data, dest)

    async def wait_received(self, condition: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
