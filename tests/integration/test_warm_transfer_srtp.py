"""A warm transfer on a trunk that requires SRTP (``media.srtp: required``): the human's leg is
SRTP too. SIPp signals both legs (the caller's PBX with an RTP/SAVP offer of the test's key,
refusing the REFER so the gateway bridges the legs; the human's phone answering RTP/SAVP with
another key of the test's); loopback sockets protect the caller's speech with libsrtp and
unprotect what reaches the human with the key the gateway offered it."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import numpy as np

from gateway.agent import EmbeddedRealtimeServer
from gateway.media.g711 import PCMU
from gateway.media.rtp import RtpSender
from gateway.media.srtp import CryptoAttribute, SrtpSession, parse_crypto
from tests.audio import normalized_xcorr

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp
from .rtp_caller import voice
from .scenarios import SIP_TESTS, ok_to_request, recv_request, scenario, sdp, sip_message
from .test_srtp_call import OVER_UDP, SrtpPeer
from .test_warm_transfer import config
from .warm_scenarios import held_caller_sipp

pytestmark = SIP_TESTS

SUITE = "AES_CM_128_HMAC_SHA1_80"
CRYPTO_LINE = re.compile(r"a=crypto:(.*)")


def savp(text: str, key: CryptoAttribute) -> str:
    """A plain-RTP scenario's SDP made RTP/SAVP with `key`: every m= line, and an a=crypto
    after each telephone-event rtpmap."""
    text = text.replace("RTP/AVP", "RTP/SAVP")
    return re.sub(
        r"^( *)(a=rtpmap:101 telephone-event/8000)$",
        lambda m: f"{m[1]}{m[2]}\n{m[1]}a=crypto:{key.value()}",
        text,
        flags=re.M,
    )


def human_phone(workdir: Path, media_port: int, key: CryptoAttribute) -> Sipp:
    """A SIPp UAS as the human's phone: answers an RTP/SAVP offer with `key` and media on
    `media_port` (a socket of the test's), then takes the gateway's BYE."""
    workdir.mkdir(parents=True, exist_ok=True)
    answer = sdp(
        port=media_port,
        ip=LOOPBACK,
        proto="RTP/SAVP",
        rtpmaps=["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
                 f"a=crypto:{key.value()}"],
    )  # fmt: skip
    path = scenario(
        workdir / "human.xml",
        recv_request("INVITE", body=r"m=audio [0-9]+ RTP/SAVP 0"),
        sip_message(
            "SIP/2.0 200 OK",
            [
                "[last_Via:]",
                "[last_From:]",
                "[last_To:];tag=[pid]human[call_number]",
                "[last_Call-ID:]",
                "[last_CSeq:]",
                "Contact: <sip:human@[local_ip]:[local_port]>",
            ],
            answer,
        ),
        recv_request("ACK"),
        recv_request("BYE", timeout_ms=60_000),
        ok_to_request(),
    )
    return Sipp.uas(workdir, scenario=path, name="human")


def offered_key(phone: Sipp) -> CryptoAttribute:
    """The gateway's key in its INVITE to the human (tag 1, the suite the phone took)."""
    text = phone.messages_path.read_text(errors="replace")
    start = text.index("INVITE sip:")
    offer = text[start : text.index("\n-----", start)]  # that message alone (SIPp's trace)
    attrs = [parse_crypto(line.strip()) for line in CRYPTO_LINE.findall(offer)]
    [ours] = [a for a in attrs if a is not None and a.tag == 1]
    return ours


async def test_the_humans_leg_is_srtp_with_the_key_the_gateway_offered(tmp_path: Path) -> None:
    arguments = json.dumps({"destination": "sales", "mode": "warm", "summary": "Anna, refund."})
    fake = EmbeddedRealtimeServer(function_calls=[("transfer_call", arguments)])
    caller_key, human_key = CryptoAttribute.generate(1, SUITE), CryptoAttribute.generate(1, SUITE)
    caller, human = await SrtpPeer.open(), await SrtpPeer.open()
    phone = human_phone(tmp_path / "human", human.port, human_key)
    # The caller's speech, protected with its key (the gateway's own key protects the other
    # way): a turn that asks for the transfer, then what the human must hear once bridged.
    sender, tx = RtpSender(0, 160), SrtpSession(caller_key, CryptoAttribute.generate(1, SUITE))

    def protected(samples: np.ndarray) -> list[bytes | None]:
        return [
            tx.protect(sender.build(PCMU.encode(samples[i : i + 160])))
            for i in range(0, len(samples) - 159, 160)
        ]

    asking = protected(np.concatenate([voice(1.0, 150.0), np.zeros(8000 * 3, np.int16)]))
    said = voice(4.0, 220.0)
    try:
        async with fake, phone:
            cfg = config(fake, phone.uri("600"))
            cfg["media"] = {**OVER_UDP["media"], "srtp": "required", "srtp_suites": [SUITE]}
            async with GatewayProcess(tmp_path, cfg) as gateway:
                workdir = tmp_path / "caller"
                refusal = "405 Method Not Allowed"
                sipp = held_caller_sipp(workdir, gateway.port, caller.port, refusal)
                scenario_path = workdir / "uac.xml"
                scenario_path.write_text(savp(scenario_path.read_text(), caller_key))
                async with sipp:
                    answered = await gateway.wait_for("call.answered", timeout=20)
                    rtp_port = int(answered["rtp_local"].rsplit(":", 1)[1])
                    turn = asyncio.ensure_future(caller.play((LOOPBACK, rtp_port), asking))
                    event = await gateway.wait_for("call.transfer", timeout=30)
                    await turn
                    await caller.play((LOOPBACK, rtp_port), protected(said))
                    assert await sipp.wait(30) == 0, sipp.report()
                    await gateway.wait_for("call.ended", timeout=15)
            assert await phone.wait(15) == 0, phone.report()
        gateway_key = offered_key(phone)
    finally:
        caller.close()
        human.close()
    assert answered["srtp"] == SUITE
    assert event["outcome"] == "bridged", event
    # Every packet that reached the human authenticates with the key the gateway offered it.
    heard = human.heard(SrtpSession(human_key, gateway_key))
    assert len(heard) > 50
    audio = PCMU.decode(b"".join(bytes(p.payload) for p in heard))
    score, _ = normalized_xcorr(said.astype(np.float64), audio.astype(np.float64))
    print(f"\nwarm transfer over SRTP: {len(heard)} packets to the human, correlation {score:.3f}")
    assert score > 0.5, score
