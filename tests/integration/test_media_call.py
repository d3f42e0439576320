"""Media over a real call: SIPp sets the call up, a loopback RTP socket plays the caller.

The caller's RTP is built by hand so that it can be as bad as real networks make it:
reordered, duplicated, lost, with RFC 4733 key presses in the middle.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.media.g711 import PCMU
from gateway.media.rtp import RtpSender
from tests.audio import active_bounds, normalized_xcorr, speech_wav

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port, missing_peer_tools
from .rtp_peer import RtpPeer, dtmf_packets, uac_until_bye

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
]

SILENCE = b"\xff" * 160


async def call(tmp_path: Path, gateway: GatewayProcess, peer: RtpPeer) -> tuple[Sipp, int]:
    """SIPp calls the gateway offering the peer's port; returns SIPp and the gateway's port."""
    scenario = uac_until_bye(tmp_path / "uac.xml", peer.port)
    sipp = Sipp(
        tmp_path,
        [
            "-sf", scenario, "-m", 1, "-i", LOOPBACK, "-p", free_udp_port(),
            "-mp", free_port_block(4), "-s", "echo", "-timeout", "60", "-timeout_error",
            f"{LOOPBACK}:{gateway.port}",
        ],
    )  # fmt: skip
    await sipp.start()
    answered = await gateway.wait_for("call.answered", timeout=20)
    return sipp, int(answered["rtp_local"].rsplit(":", 1)[1])


async def hang_up(gateway: GatewayProcess, sipp: Sipp) -> dict[str, Any]:
    """Stop the gateway: it sends BYE, SIPp answers and exits 0. Returns the rtp.stats line."""
    await gateway.stop()
    code = await sipp.wait(timeout=30)
    assert code == 0, f"SIPp failed:\n{sipp.report()}\n{gateway.tail()}"
    [stats] = gateway.find("rtp.stats")
    return stats


async def test_key_presses_are_decoded_once_each(tmp_path: Path) -> None:
    sender = RtpSender(0, 160)
    stream: list[bytes | None] = [bytes(sender.build(SILENCE)) for _ in range(10)]
    for digit in (1, 11, 9):  # "1", "#", "9", each 100 ms, sent in place of audio
        keys = dtmf_packets(sender, digit, sender.timestamp)
        sender.timestamp += 800
        if digit == 11:
            keys[1], keys[2] = keys[2], keys[1]  # an update overtakes another
            keys.append(keys[-1])  # and the network duplicates an end packet
        stream += keys
        stream += [bytes(sender.build(SILENCE)) for _ in range(10)]
    peer = await RtpPeer.open()
    try:
        async with GatewayProcess(tmp_path) as gateway:
            sipp, rtp_port = await call(tmp_path, gateway, peer)
            await peer.play((LOOPBACK, rtp_port), stream)
            await gateway.wait_for("call.dtmf", timeout=10, where=lambda e: e["digit"] == "9")
            stats = await hang_up(gateway, sipp)
    finally:
        peer.close()
    presses = [(e["digit"], e["duration_ms"]) for e in gateway.find("call.dtmf")]
    assert presses == [("1", 100), ("#", 100), ("9", 100)]
    assert stats["dtmf_events"] == 3 and stats["lost"] == 0 and stats["reordered"] == 1
    assert stats["filled_ms"] == 300  # the three key presses, as silence on the timeline


@pytest.mark.skipif(bool(missing_peer_tools("espeak-ng", "sox")), reason="needs espeak-ng, sox")
async def test_echo_survives_reordering_duplicates_and_loss(tmp_path: Path) -> None:
    speech = speech_wav(tmp_path / "speech.wav", "Please read me back my account number", 8000,
                        0.5, 6.0)  # fmt: skip
    start, end = active_bounds(speech, 8000)
    reference = speech[start:end]
    sender = RtpSender(0, 160)
    frames = [bytes(sender.build(PCMU.encode(speech[i : i + 160])))
              for i in range(0, len(speech) - 159, 160)]  # fmt: skip
    stream: list[bytes | None] = list(frames)
    swapped = dropped = duplicated = 0
    for i in range(5, len(stream) - 2, 7):  # swap neighbours: 20 ms out of order
        stream[i], stream[i + 1] = stream[i + 1], stream[i]
        swapped += 1
    for i in range(13, len(stream), 97):  # lose about 1 %
        stream[i] = None
        dropped += 1
    for i in range(3, len(stream), 11):  # duplicate about 9 %
        if stream[i] is not None:
            stream.insert(i + 1, stream[i])
            duplicated += 1
    peer = await RtpPeer.open()
    try:
        async with GatewayProcess(tmp_path) as gateway:
            sipp, rtp_port = await call(tmp_path, gateway, peer)
            await peer.play((LOOPBACK, rtp_port), stream)
            stats = await hang_up(gateway, sipp)
    finally:
        peer.close()

    assert stats["lost"] == dropped
    assert stats["reordered"] > 0.8 * swapped
    assert stats["late"] + stats["duplicates"] == duplicated
    assert stats["filled_ms"] == 20 * dropped
    heard = PCMU.decode(b"".join(bytes(p.payload) for _, p in peer.received))
    peak, lag = normalized_xcorr(reference, heard)
    print(f"\nmangled caller audio echoed back: correlation {peak:.3f} at {lag / 8000:.2f} s")
    assert peak >= 0.8
    assert lag / 8000 > end / 8000, "the echo started before the caller finished speaking"
    assert np.sqrt(np.mean(heard[: max(lag - 2000, 0)].astype(np.float64) ** 2)) < 300
