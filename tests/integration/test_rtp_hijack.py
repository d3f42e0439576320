"""Strict RTP through a real call: a second host sprays the call's RTP port and takes nothing.

SIPp sets the call up offering a loopback socket of the test (the caller's RTP); the gateway
answers with the embedded echo agent. A sprayer on 127.0.0.2 sends junk and random but
valid-looking RTP (random SSRC and sequence, the negotiated payload type, loud noise) at every
port of the gateway's RTP range from before the INVITE (the port is bound before the call is
answered), then at the call's port before the caller's first packet and all through the call,
and during the call also a coherent run of its own (one SSRC, sequence in order). The caller's
speech must still come back (correlation >= 0.8), and the sprayer must receive nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import struct
from pathlib import Path

import pytest

from gateway.media.g711 import PCMU
from gateway.media.rtp import RtpSender
from tests.audio import active_bounds, normalized_xcorr, speech_wav

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port, missing_peer_tools
from .rtp_peer import RtpPeer, uac_until_bye

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
    pytest.mark.skipif(bool(missing_peer_tools("espeak-ng", "sox")), reason="needs espeak-ng, sox"),
]

ATTACKER = "127.0.0.2"  # another host on Linux loopback


class Sprayer(asyncio.DatagramProtocol):
    """The attacker's socket: what it sends, and every byte that comes back to it."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0  # bytes
        self.sent = 0  # datagrams
        self.rng = random.Random(1313)
        self._run_ssrc = self.rng.randrange(1 << 32)
        self._run_seq = self.rng.randrange(1 << 16)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += len(data)

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable from a port of the range nobody binds: expected."""

    def _send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (LOOPBACK, port))
        self.sent += 1

    def junk(self, port: int) -> None:
        rng = self.rng
        self._send(rng.randbytes(rng.choice((1, 2, 11, 12, 172, 400))), port)

    def random_rtp(self, port: int) -> None:
        rng = self.rng
        header = struct.pack(
            "!BBHII",
            0x80,
            0,
            rng.randrange(1 << 16),
            rng.randrange(1 << 32),
            rng.randrange(1 << 32),
        )
        self._send(header + rng.randbytes(160), port)

    def coherent_rtp(self, port: int) -> None:
        """One more packet of a well-formed stream: what a NAT'd caller's looks like."""
        header = struct.pack(
            "!BBHII", 0x80, 0, self._run_seq, self._run_seq * 160 & 0xFFFFFFFF, self._run_ssrc
        )
        self._run_seq = (self._run_seq + 1) & 0xFFFF
        self._send(header + self.rng.randbytes(160), port)


async def spray_range(sprayer: Sprayer, ports: range, stop: asyncio.Event) -> None:
    """Junk and random RTP at every even port of the range, every 10 ms, until ``stop``."""
    while not stop.is_set():
        for port in ports:
            sprayer.junk(port)
            sprayer.random_rtp(port)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.01)  # the spray's pace


async def spray_call(sprayer: Sprayer, port: int, stop: asyncio.Event) -> None:
    """At the call's port, every 5 ms: junk, random RTP and the next packet of a run."""
    while not stop.is_set():
        sprayer.junk(port)
        sprayer.random_rtp(port)
        sprayer.coherent_rtp(port)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.005)  # the spray's pace


async def test_a_sprayer_neither_reaches_the_model_nor_hears_the_call(tmp_path: Path) -> None:
    speech = speech_wav(tmp_path / "speech.wav", "Please read me back my account number", 8000,
                        0.5, 6.0)  # fmt: skip
    start, end = active_bounds(speech, 8000)
    reference = speech[start:end]
    sender = RtpSender(0, 160)
    frames = [bytes(sender.build(PCMU.encode(speech[i : i + 160])))
              for i in range(0, len(speech) - 159, 160)]  # fmt: skip
    loop = asyncio.get_running_loop()
    _, sprayer = await loop.create_datagram_endpoint(Sprayer, local_addr=(ATTACKER, 0))
    peer = await RtpPeer.open()
    try:
        async with GatewayProcess(tmp_path) as gateway:
            media = gateway.config["media"]
            ports = range(media["rtp_port_min"], media["rtp_port_max"] + 1, 2)
            stop_range, stop_call = asyncio.Event(), asyncio.Event()
            # Before the INVITE: every port the call may get, while it is bound and answered.
            ranged = asyncio.create_task(spray_range(sprayer, ports, stop_range))
            scenario = uac_until_bye(tmp_path / "uac.xml", peer.port)
            sipp = Sipp(
                tmp_path,
                [
                    "-sf", scenario, "-m", 1, "-i", LOOPBACK, "-p", free_udp_port(),
                    "-mp", free_port_block(4), "-s", "echo", "-timeout", "60",
                    "-timeout_error", f"{LOOPBACK}:{gateway.port}",
                ],
            )  # fmt: skip
            await sipp.start()
            answered = await gateway.wait_for("call.answered", timeout=20)
            stop_range.set()
            await ranged
            # The port of the gateway's SDP answer (m=audio), as its log line reports it.
            rtp_port = int(answered["rtp_local"].rsplit(":", 1)[1])
            # Before the caller's first packet: junk and random RTP at the call's port (sent
            # first, so queued first on the gateway's socket).
            for _ in range(50):
                sprayer.junk(rtp_port)
                sprayer.random_rtp(rtp_port)
            at_call = asyncio.create_task(spray_call(sprayer, rtp_port, stop_call))
            try:
                await peer.play((LOOPBACK, rtp_port), frames)
            finally:
                stop_call.set()
                await at_call
            await gateway.stop()
            code = await sipp.wait(timeout=30)
            assert code == 0, f"SIPp failed:\n{sipp.report()}\n{gateway.tail()}"
            [stats] = gateway.find("rtp.stats")
    finally:
        peer.close()
        assert sprayer.transport is not None
        sprayer.transport.close()

    heard = PCMU.decode(b"".join(bytes(p.payload) for _, p in peer.received))
    peak, _ = normalized_xcorr(reference, heard)
    print(
        f"\nsprayed {sprayer.sent} datagrams; caller's speech echoed back: correlation "
        f"{peak:.3f}; the gateway dropped {stats['foreign_source']} from strangers"
    )
    assert peak >= 0.8, "the caller's audio did not reach the model (or the sprayer's did)"
    assert sprayer.received == 0, f"the sprayer received {sprayer.received} bytes of the call"
    assert stats["sources_learned"] == 0
    assert stats["foreign_source"] > 1000  # the spray did reach the call's port
    assert stats["packets_in"] >= 0.9 * len(frames)
