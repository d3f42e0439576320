"""SRTP calls (SDES, RFC 4568) through the real gateway process: SIPp signals an RTP/SAVP offer
with an a=crypto key of the test's, a loopback socket protects the caller's speech with
libsrtp and unprotects what comes back from the embedded echo agent.

Over UDP, so with ``media.srtp_over_insecure_signalling: true`` (TLS signalling is built
beside this; a baresip call over TLS will prove the default path).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.media.g711 import PCMU
from gateway.media.rtp import RtpPacket, RtpSender, parse_rtp
from gateway.media.srtp import CryptoAttribute, SrtpDropped, SrtpSession, parse_crypto
from tests.audio import active_bounds, normalized_xcorr, speech_wav

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port, missing_peer_tools
from .rtp_peer import RtpPeer
from .scenarios import PCMU_MAPS, in_dialog, invite, pause, recv, run_sipp, scenario, sdp

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
]

OVER_UDP = {"media": {"srtp_over_insecure_signalling": True}}


@dataclass
class SrtpPeer(RtpPeer):
    """An RtpPeer whose traffic is SRTP: it keeps what arrives as it came (the gateway's key
    is known only from its answer), and ``heard`` unprotects it in arrival order."""

    raw: list[bytes] = field(default_factory=list)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.raw.append(data)
        self._arrived.set()

    def heard(self, session: SrtpSession) -> list[RtpPacket]:
        packets = []
        for data in self.raw:
            try:
                packets.append(parse_rtp(session.unprotect(data)))
            except SrtpDropped as exc:
                raise AssertionError(f"a packet from the gateway failed: {exc.kind}") from None
        return packets


def savp_offer(port: int | str, *crypto: str) -> str:
    maps = [*PCMU_MAPS, "a=ptime:20", *(f"a=crypto:{line}" for line in crypto)]
    return sdp(port=port, proto="RTP/SAVP", rtpmaps=maps)


def answer_crypto(sipp: Sipp, ours: CryptoAttribute) -> CryptoAttribute:
    """The gateway's a=crypto in its 200 OK, from SIPp's message trace."""
    text = sipp.messages_path.read_text(errors="replace")
    lines = {m.strip() for m in re.findall(r"a=crypto:(.*)", text)} - {ours.value()}
    [line] = lines
    attr = parse_crypto(line)
    assert attr is not None
    return attr


async def metrics_text(gateway: GatewayProcess) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gateway.metrics_url}/metrics", timeout=aiohttp.ClientTimeout(5)) as response,
    ):
        return await response.text()


def metric(text: str, kind: str) -> float:
    match = re.search(rf'^sipgw_rtp_packets_total\{{kind="{kind}"\}} (\S+)$', text, re.M)
    return float(match[1]) if match else 0.0


@pytest.mark.skipif(bool(missing_peer_tools("espeak-ng", "sox")), reason="needs espeak-ng, sox")
@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM"])
async def test_srtp_echo_with_a_forged_and_a_replayed_packet_mid_call(
    tmp_path: Path, suite: str
) -> None:
    speech = speech_wav(tmp_path / "speech.wav", "Please read me back my account number", 8000,
                        0.5, 6.0)  # fmt: skip
    start, end = active_bounds(speech, 8000)
    reference = speech[start:end]
    ours = CryptoAttribute.generate(1, suite)
    sender = RtpSender(0, 160)
    # the caller's key: what the gateway needs to hear us; the gateway's comes in its answer
    tx = SrtpSession(ours, CryptoAttribute.generate(1, suite))
    stream: list[bytes | None] = [
        tx.protect(sender.build(PCMU.encode(speech[i : i + 160])))
        for i in range(0, len(speech) - 159, 160)
    ]
    # An attacker without the key: a packet of the call with a sequence number not used yet
    # (one already used is a replay, refused before its tag is checked) and changed audio.
    forged = bytearray(stream[40])  # type: ignore[arg-type]
    forged[2:4] = ((int.from_bytes(forged[2:4], "big") + 1000) & 0xFFFF).to_bytes(2, "big")
    forged[30] ^= 0x5A
    stream.insert(41, bytes(forged))
    stream.insert(60, stream[50])  # replayed ten packets later
    peer = await SrtpPeer.open()
    call_s = len(stream) * 0.02 + 1.0
    records = tmp_path / "records"
    config = {**OVER_UDP, "records": {"calls_dir": str(records)}}
    path = scenario(
        tmp_path / "srtp.xml",
        invite(savp_offer(peer.port, ours.value())),
        recv(100, optional=True),
        recv(200, body=r"m=audio [0-9]+ RTP/SAVP 0"),
        in_dialog("ACK", 1),
        pause(int(call_s * 1000)),
        in_dialog("BYE", 2),
        recv(200),
    )
    try:
        async with GatewayProcess(tmp_path, config) as gateway:
            sipp = Sipp(
                tmp_path,
                ["-sf", path, "-m", 1, "-nr", "-i", LOOPBACK, "-p", free_udp_port(),
                 "-mp", free_port_block(4), "-s", "echo", "-timeout", 60, "-timeout_error",
                 f"{LOOPBACK}:{gateway.port}"],
            )  # fmt: skip
            async with sipp:
                answered = await gateway.wait_for("call.answered", timeout=20)
                rtp_port = int(answered["rtp_local"].rsplit(":", 1)[1])
                await peer.play((LOOPBACK, rtp_port), stream)
                await gateway.wait_for("call.ended", timeout=call_s + 10)
                assert await sipp.wait(15) == 0, sipp.report()
            scraped = await metrics_text(gateway)
        failed = metric(scraped, "srtp_auth_failed")
        replayed = metric(scraped, "srtp_replayed")
        [stats] = gateway.find("rtp.stats")
        theirs = answer_crypto(sipp, ours)
    finally:
        peer.close()

    assert answered["srtp"] == suite
    assert (theirs.suite, theirs.tag) == (suite, 1) and theirs.key != ours.key
    assert (stats["srtp_auth_failures"], stats["srtp_replayed"]) == (1, 1)
    assert stats["duplicates"] == 0 and stats["lost"] == 0  # dropped before the reorder buffer
    assert (failed, replayed) == (1, 1)
    heard = PCMU.decode(b"".join(bytes(p.payload) for p in peer.heard(SrtpSession(ours, theirs))))
    peak, lag = normalized_xcorr(reference, heard)
    print(f"\nSRTP {suite} echo: correlation {peak:.3f} at {lag / 8000:.2f} s")
    assert peak >= 0.8
    # Neither key is in the gateway's log, its call record or its metrics.
    [record] = list(records.glob("*.json"))
    assert record.read_text().count('"srtp_auth_failures": 1')
    texts = [gateway.log_path.read_text(), record.read_text(), scraped]
    for key in (ours, theirs):
        value = key.value().split("inline:")[1]
        for text in texts:
            assert value not in text and value[:16] not in text
            assert key.key.hex() not in text


async def refused(tmp_path: Path, gateway: GatewayProcess, name: str, body: str) -> dict[str, Any]:
    """One INVITE with `body` that must get 488; returns the gateway's call.rejected line."""
    seen = len(gateway.find("call.rejected"))
    path = scenario(
        tmp_path / f"{name}.xml",
        invite(body),
        recv(100, optional=True),
        recv(488),
        in_dialog("ACK", 1, branch="inv1"),
    )
    await run_sipp(tmp_path, path, gateway.port, context=gateway.tail)
    await gateway.wait_count("call.rejected", seen + 1, timeout=10)
    return gateway.find("call.rejected")[seen]


async def test_offers_the_srtp_settings_refuse_get_488_and_the_daemon_goes_on(
    tmp_path: Path,
) -> None:
    key80 = CryptoAttribute.generate(1, "AES_CM_128_HMAC_SHA1_80").value()
    malformed = "1 AEAD_AES_256_GCM inline:c2hvcnQga2V5"  # base64 of 9 bytes, not 44
    config = {
        "media": {
            "srtp": "required",
            "srtp_over_insecure_signalling": True,
            "srtp_suites": ["AEAD_AES_256_GCM"],
        }
    }
    async with GatewayProcess(tmp_path, config) as gateway:
        plain = await refused(tmp_path, gateway, "plain", sdp())
        lacking = await refused(tmp_path, gateway, "lacking", savp_offer("[media_port]", key80))
        bad = await refused(tmp_path, gateway, "malformed", savp_offer("[media_port]", malformed))
    assert "media.srtp is required" in plain["reason"]
    assert "no common SRTP crypto suite" in lacking["reason"]
    assert "AES_CM_128_HMAC_SHA1_80" in lacking["reason"]
    assert "44-byte key" in bad["reason"] and "c2hvcnQga2V5" not in gateway.log_path.read_text()
    assert key80.split("inline:")[1] not in gateway.log_path.read_text()
    assert {e["status"] for e in (plain, lacking, bad)} == {488}


async def test_srtp_keys_over_udp_are_refused_by_default(tmp_path: Path) -> None:
    key = CryptoAttribute.generate(1, "AES_CM_128_HMAC_SHA1_80").value()
    async with GatewayProcess(tmp_path) as gateway:
        line = await refused(tmp_path, gateway, "udp", savp_offer("[media_port]", key))
        # A plain call on the same gateway is still answered (optional mode).
        await run_sipp(
            tmp_path,
            scenario(
                tmp_path / "plain.xml",
                invite(sdp()),
                recv(100, optional=True),
                recv(200, body=r"m=audio [0-9]+ RTP/AVP 0"),
                in_dialog("ACK", 1),
                in_dialog("BYE", 2),
                recv(200),
            ),
            gateway.port,
            context=gateway.tail,
        )
        await gateway.wait_for("call.ended", timeout=10)
    assert "unencrypted signalling" in line["reason"]
    assert "srtp_over_insecure_signalling" in line["reason"]
    assert key.split("inline:")[1] not in gateway.log_path.read_text()


@pytest.mark.skipif(bool(missing_peer_tools("espeak-ng", "sox")), reason="needs espeak-ng, sox")
async def test_a_reinvite_with_a_new_key_rekeys_both_ways(tmp_path: Path) -> None:
    """RFC 4568 §7.1.4: the caller re-keys mid-call with a re-INVITE; the gateway answers with
    a new key of its own, and from then on both directions run new SRTP sessions."""
    suite = "AES_CM_128_HMAC_SHA1_80"
    speech = speech_wav(tmp_path / "speech.wav", "Please read me back my account number", 8000,
                        0.5, 6.0)  # fmt: skip
    start, end = active_bounds(speech, 8000)
    first, second = CryptoAttribute.generate(1, suite), CryptoAttribute.generate(1, suite)
    sender = RtpSender(0, 160)
    tx_first = SrtpSession(first, CryptoAttribute.generate(1, suite))
    tx_second = SrtpSession(second, CryptoAttribute.generate(1, suite))
    silence = b"\xff" * 160
    before = [tx_first.protect(sender.build(silence)) for _ in range(50)]
    after = [
        tx_second.protect(sender.build(PCMU.encode(speech[i : i + 160])))
        for i in range(0, len(speech) - 159, 160)
    ]
    peer = await SrtpPeer.open()
    path = scenario(
        tmp_path / "rekey.xml",
        invite(savp_offer(peer.port, first.value())),
        recv(100, optional=True),
        recv(200),
        in_dialog("ACK", 1),
        pause(2000),  # the first key's packets (1 s) are all out by then
        invite(savp_offer(peer.port, second.value()).replace(
            "53655765 1", "53655765 2"), branch="inv2", cseq=2, in_dialog=True),
        recv(200, body=r"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        in_dialog("ACK", 2),
        pause(len(after) * 20 + 1500),
        in_dialog("BYE", 3),
        recv(200),
    )  # fmt: skip
    try:
        async with GatewayProcess(tmp_path, OVER_UDP) as gateway:
            sipp = Sipp(
                tmp_path,
                ["-sf", path, "-m", 1, "-nr", "-i", LOOPBACK, "-p", free_udp_port(),
                 "-mp", free_port_block(4), "-s", "echo", "-timeout", 60, "-timeout_error",
                 f"{LOOPBACK}:{gateway.port}"],
            )  # fmt: skip
            async with sipp:
                answered = await gateway.wait_for("call.answered", timeout=20)
                rtp = (LOOPBACK, int(answered["rtp_local"].rsplit(":", 1)[1]))
                await peer.play(rtp, before)
                await gateway.wait_for("call.srtp_rekeyed", timeout=10)
                await peer.play(rtp, after)
                await gateway.wait_for("call.ended", timeout=15)
                assert await sipp.wait(15) == 0, sipp.report()
        [stats] = gateway.find("rtp.stats")
        text = sipp.messages_path.read_text(errors="replace")
    finally:
        peer.close()
    ours = {first.value(), second.value()}
    lines = [m.strip() for m in re.findall(r"a=crypto:(.*)", text) if m.strip() not in ours]
    theirs = [parse_crypto(line) for line in dict.fromkeys(lines)]
    assert len(theirs) == 2 and theirs[0] is not None and theirs[1] is not None
    old, new = SrtpSession(first, theirs[0]), SrtpSession(second, theirs[1])
    # What the gateway sent: under its first key until the re-INVITE, then under its new one.
    heard, session, switched = [], old, 0
    for data in peer.raw:
        try:
            heard.append(parse_rtp(session.unprotect(data)))
        except SrtpDropped:
            assert session is old, "a packet under neither of the gateway's keys"
            session, switched = new, len(heard)
            heard.append(parse_rtp(session.unprotect(data)))
    assert 0 < switched < len(heard)
    assert stats["srtp_auth_failures"] == 0 and stats["srtp_replayed"] == 0
    assert stats["packets_in"] == len(before) + len(after)
    echo = PCMU.decode(b"".join(bytes(p.payload) for p in heard[switched:]))
    peak, _ = normalized_xcorr(speech[start:end], echo)
    print(f"\nafter re-keying: echo correlation {peak:.3f}")
    assert peak >= 0.8
