"""Offer/answer through the call's life, against SIPp: late offer (ours in the 200, the answer
in the ACK), re-INVITE hold and unhold, media moved to a new address, session refresh.

The caller's RTP endpoints are sockets of the test: what the gateway sends is counted there.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.media.codecs import codec_spec
from gateway.media.rtp import RtpSender, parse_rtp
from tests.audio import normalized_xcorr

from .gateway_proc import InProcessGateway
from .peers import LOOPBACK
from .rtp_caller import voice
from .scenarios import (
    SIP_TESTS,
    in_dialog,
    invite,
    ok_to_request,
    pause,
    recv,
    recv_request,
    run_sipp,
    scenario,
    sdp,
)

pytestmark = SIP_TESTS


class RtpSink(asyncio.DatagramProtocol):
    """A caller's RTP port: arrival times of what the gateway sends to it."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self._got = asyncio.Event()
        self.port = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.arrivals.append(time.monotonic())
        self._got.set()

    async def packet_after(self, t: float, timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(a > t for a in self.arrivals):
                self._got.clear()
                await self._got.wait()

    def count_between(self, start: float, end: float) -> int:
        return sum(start < a <= end for a in self.arrivals)


async def rtp_sink() -> tuple[RtpSink, asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=(LOOPBACK, 0))
    sink.port = transport.get_extra_info("sockname")[1]
    return sink, transport


async def wait_event(gateway: InProcessGateway, name: str, timeout: float = 10) -> float:
    await gateway.wait_for(name, timeout=timeout)
    return time.monotonic()


async def test_hold_unhold_move_and_refresh(tmp_path: Path) -> None:
    a, ta = await rtp_sink()
    b, tb = await rtp_sink()
    try:
        async with InProcessGateway() as gateway:
            path = scenario(
                tmp_path / "reinvite.xml",
                invite(sdp(port=a.port, ip=LOOPBACK)),
                recv(100, optional=True),
                recv(200),
                in_dialog("ACK", 1),
                pause(1000),
                invite(
                    sdp(port=a.port, ip=LOOPBACK, direction="sendonly", version=2),
                    branch="re2",
                    cseq=2,
                    in_dialog=True,
                ),
                recv(200, body="a=recvonly"),
                in_dialog("ACK", 2),
                pause(1500),
                invite(
                    sdp(port=b.port, ip=LOOPBACK, version=3), branch="re3", cseq=3, in_dialog=True
                ),
                recv(200, body="a=sendrecv"),
                in_dialog("ACK", 3),
                pause(1000),
                # A session refresh: the same SDP again gets the same answer, same o= version.
                invite(
                    sdp(port=b.port, ip=LOOPBACK, version=3), branch="re4", cseq=4, in_dialog=True
                ),
                recv(200, body="o=- [0-9]+ 2 IN IP4"),
                in_dialog("ACK", 4),
                pause(300),
                in_dialog("BYE", 5),
                recv(200),
            )
            run = asyncio.ensure_future(
                run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
            )
            answered = await wait_event(gateway, "call.answered")
            await a.packet_after(answered)
            held = await wait_event(gateway, "call.hold")
            # Nothing toward the caller while held (one packet may have been on its way).
            resumed = await wait_event(gateway, "call.resume")
            assert a.count_between(held + 0.05, resumed) == 0, "RTP kept flowing during hold"
            assert resumed - held > 1.0
            moved = gateway.find("call.media_moved")
            assert moved and moved[0]["rtp_remote"] == f"{LOOPBACK}:{b.port}"
            await b.packet_after(resumed)
            await run
            assert a.count_between(resumed + 0.05, time.monotonic()) == 0
            versions = [e["version"] for e in gateway.find("sip.reinvite")]
            assert versions == ["1", "2", "2"]
    finally:
        ta.close()
        tb.close()


async def test_late_offer_is_answered_in_the_ack(tmp_path: Path) -> None:
    a, ta = await rtp_sink()
    try:
        async with InProcessGateway() as gateway:
            path = scenario(
                tmp_path / "late_offer.xml",
                invite(None),
                recv(100, optional=True),
                # Every configured codec (PCMU, PCMA): the ACK's answer picks one.
                recv(200, body="m=audio [0-9]+ RTP/AVP 0 8 101"),
                in_dialog("ACK", 1, body=sdp(port=a.port, ip=LOOPBACK, formats="0")),
                pause(1000),
                # An offerless re-INVITE: our offer names only the codec in use (a new o=
                # version: the SDP changed, RFC 3264 §8), the answer in the ACK.
                invite(None, branch="re2", cseq=2, in_dialog=True),
                recv(200, body="o=- [0-9]+ 1 IN IP4.*RTP/AVP 0 101[^ 0-9]"),
                in_dialog("ACK", 2, body=sdp(port=a.port, ip=LOOPBACK, formats="0")),
                pause(300),
                # Another: the same offer again, o= version unchanged (§8).
                invite(None, branch="re3", cseq=3, in_dialog=True),
                recv(200, body="o=- [0-9]+ 1 IN IP4"),
                in_dialog("ACK", 3, body=sdp(port=a.port, ip=LOOPBACK, formats="0")),
                pause(300),
                in_dialog("BYE", 4),
                recv(200),
            )
            run = asyncio.ensure_future(
                run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
            )
            answer = await gateway.wait_for("sip.late_answer", timeout=10)
            assert answer["rtp_remote"] == f"{LOOPBACK}:{a.port}"
            await a.packet_after(time.monotonic())
            await run
            ended = await gateway.wait_for("call.ended", timeout=10)
            assert ended["reason"] == "caller_bye"
    finally:
        ta.close()


async def test_late_offer_without_an_answer_in_the_ack_ends_the_call(tmp_path: Path) -> None:
    async with InProcessGateway() as gateway:
        path = scenario(
            tmp_path / "late_no_answer.xml",
            invite(None),
            recv(100, optional=True),
            recv(200),
            in_dialog("ACK", 1),
            recv_request("BYE", timeout_ms=10000),
            ok_to_request(),
        )
        await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
        ended = await gateway.wait_for("call.ended", timeout=10)
        assert ended["reason"] == "bad_sdp_answer"
        (session,) = gateway.realtime_sessions
        await asyncio.wait_for(session.wait_closed(), 10)


def rtp_packet(seq: int) -> bytes:
    """One 20 ms PCMU packet of silence (RFC 3550 header, payload type 0)."""
    header = bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
    return header + b"\x12\x34\x56\x78" + b"\xff" * 160


async def test_nat_advertised_address_and_symmetric_rtp(tmp_path: Path) -> None:
    a, ta = await rtp_sink()  # where the SDP says the caller listens
    c, tc = await rtp_sink()  # where the caller's RTP really comes from (its NAT)
    try:
        config = {"sip": {"advertise_address": "192.0.2.99"}}
        async with InProcessGateway(config) as gateway:
            path = scenario(
                tmp_path / "nat.xml",
                invite(sdp(port=a.port, ip=LOOPBACK)),
                recv(100, optional=True),
                recv(
                    200,
                    headers={"Contact": "sip:192.0.2.99:[0-9]+"},
                    body="c=IN IP4 192.0.2.99",
                ),
                in_dialog("ACK", 1),
                pause(2500),
                in_dialog("BYE", 2),
                recv(200),
            )
            run = asyncio.ensure_future(
                run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
            )
            answered = await gateway.wait_for("call.answered", timeout=10)
            await a.packet_after(0)
            rtp_port = int(str(answered["rtp_local"]).rsplit(":", 1)[1])
            # Strict RTP: the advertised address never sent, so the NAT's is learned from a
            # run of 4 valid packets in sequence (one packet no longer takes the call).
            for seq in range(5):
                tc.sendto(rtp_packet(seq), (LOOPBACK, rtp_port))
            learned = await gateway.wait_for("rtp.source_learned", timeout=5)
            assert learned["rtp_remote"] == f"{LOOPBACK}:{c.port}"
            latched = time.monotonic()
            await c.packet_after(latched)
            await run
            # Learned: the gateway kept sending where the caller's packets came from.
            assert a.count_between(latched + 0.1, time.monotonic()) == 0
            assert c.count_between(latched, time.monotonic()) > 25
    finally:
        ta.close()
        tc.close()


_APPEND = "input_audio_buffer.append"


class PayloadSink(asyncio.DatagramProtocol):
    """A caller's RTP port that keeps what the gateway sends: payload type and payload."""

    def __init__(self) -> None:
        self.packets: list[tuple[int, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        packet = parse_rtp(data)
        self.packets.append((packet.payload_type, bytes(packet.payload)))


@pytest.mark.parametrize(("name", "pt"), [("PCMA", 8), ("G722", 9)])
async def test_a_late_offer_names_every_codec_and_the_acks_answer_picks_one(
    tmp_path: Path, name: str, pt: int
) -> None:
    """Our 200 OK offers G722, PCMU and PCMA; the ACK answers `name`: the gateway sends in
    it (payload type `pt`) and decodes the caller's voice in it (the echo agent repeats it)."""
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(PayloadSink, local_addr=(LOOPBACK, 0))
    port = transport.get_extra_info("sockname")[1]
    codec = codec_spec(name).open()
    said = voice(1.0, 150.0, rate=codec.rate)
    try:
        async with InProcessGateway({"media": {"codecs": ["G722", "PCMU", "PCMA"]}}) as gateway:
            gateway.gateway._embedded.keep_events = 10_000  # what the model hears, kept
            maps = [f"a=rtpmap:{pt} {name}/8000", "a=rtpmap:101 telephone-event/8000"]
            path = scenario(
                tmp_path / "late_codecs.xml",
                invite(None),
                recv(100, optional=True),
                recv(200, body="m=audio [0-9]+ RTP/AVP 9 0 8 101[^ 0-9]"),
                in_dialog(
                    "ACK", 1, body=sdp(port=port, ip=LOOPBACK, formats=f"{pt} 101", rtpmaps=maps)
                ),
                pause(5000),
                in_dialog("BYE", 2),
                recv(200),
            )
            run = asyncio.ensure_future(
                run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
            )
            answered = await gateway.wait_for("call.answered", timeout=10)
            assert answered["codec"] == name
            host, gw_port = answered["rtp_local"].rsplit(":", 1)
            frame = codec.rate // 50
            sender = RtpSender(pt, 160)
            chunks = [said[i : i + frame] for i in range(0, len(said), frame)]
            silence = [np.zeros(frame, dtype=np.int16)] * 25
            packets = [bytes(sender.build(codec.encode(c))) for c in chunks + silence]
            for data in packets:
                transport.sendto(data, (host, int(gw_port)))
                await asyncio.sleep(0.02)  # pacing a real-time stream, not synchronisation
            await run
            ended = await gateway.wait_for("call.ended", timeout=10)
            (session,) = gateway.realtime_sessions
            appended = [e["audio"] for e in session.received if e["type"] == _APPEND]
    finally:
        transport.close()
    assert {p for p, _ in sink.packets} == {pt} and len(sink.packets) > 100
    assert ended["rtp_in"] >= len(packets) - 2
    # What the model heard (PCM16, 24 kHz) is the caller's voice, decoded in `name`.
    pcm = np.frombuffer(b"".join(base64.b64decode(a) for a in appended), dtype="<i2")
    at_rate = np.interp(
        np.arange(0, len(pcm), 24000 / codec.rate), np.arange(len(pcm)), pcm.astype(np.float64)
    )
    peak, _ = normalized_xcorr(said.astype(np.float64), at_rate)
    print(f"\nlate offer answered {name}: the model heard the caller at {peak:.3f}")
    assert peak >= 0.9
