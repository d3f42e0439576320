"""Transcripts survive calls that end abruptly, and the greeting is the first thing heard.

Real gateway process, SIPp for the signalling, a Python phone on a loopback socket, the fake
Realtime service in this process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.agent import EmbeddedRealtimeServer, chime
from tests.audio import normalized_xcorr
from tests.realtime_schema import validate_client_event

from .gateway_proc import GatewayProcess
from .peers import missing_peer_tools
from .rtp_caller import RtpCaller, voice
from .scenarios import sipp_dial
from .test_barge_in import ANSWER_TEXT, BURST, gateway_config, long_answer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_peer_tools("sipp")), reason="needs sipp"),
]


def read_transcript(directory: Path) -> list[dict[str, Any]]:
    [path] = list(directory.glob("*.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("ending", ["caller_bye", "service_drop"])
async def test_a_call_cut_mid_answer_keeps_its_transcript(tmp_path: Path, ending: str) -> None:
    """The caller hangs up (BYE) in the middle of the agent's answer, or the service drops
    the WebSocket (1011) and refuses the reconnect: every turn is still written, the agent's
    as far as it was heard, and the end of the call with its reason."""
    transcripts = tmp_path / "transcripts"
    bye_ms = 4000 if ending == "caller_bye" else None
    fake = EmbeddedRealtimeServer(answer=long_answer(), burst_speed=BURST)
    async with fake, RtpCaller() as phone:
        config = {**gateway_config(fake), "records": {"transcripts_dir": str(transcripts)}}
        async with GatewayProcess(tmp_path, config) as gateway:
            sipp = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, hang_up_after_ms=bye_ms)
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 120.0))
                if ending == "service_drop":
                    before = phone.sound_packets
                    await phone.wait_until(
                        lambda: phone.sound_packets > before + 50, 20, "a second of the answer"
                    )
                    fake.refuse_status = 503
                    await fake.sessions[0].drop(1011)
                ended = await gateway.wait_for("call.ended", timeout=30)
                assert await sipp.wait(15) == 0, sipp.report()
    expected = "caller_bye" if ending == "caller_bye" else "realtime_closed:1011"
    assert ended["reason"] == expected
    lines = read_transcript(transcripts)
    assert [line.get("event") or line["role"] for line in lines] == [
        "answered", "caller", "agent", "ended",
    ]  # fmt: skip
    agent = lines[2]
    heard_on_wire = 20 * phone.sound_packets
    print(f"\n{ending}: agent heard {agent['heard_ms']} ms, phone got {heard_on_wire} ms")
    assert agent["interrupted"] and agent["full_text"] == ANSWER_TEXT
    assert 0 < agent["heard_ms"] < agent["audio_ms"]
    assert abs(agent["heard_ms"] - heard_on_wire) <= 40  # the last packets may be in flight
    assert ANSWER_TEXT.startswith(agent["text"]) and agent["text"] != ANSWER_TEXT
    assert lines[-1]["reason"] == expected


async def test_greeting_the_caller_hears_the_agent_first(tmp_path: Path) -> None:
    greeting = "Greet the caller and ask how you can help"
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        async with GatewayProcess(tmp_path, gateway_config(fake, greeting=greeting)) as gateway:
            async with sipp_dial(tmp_path / "sipp", gateway.port, phone.port) as sipp:
                await phone.wait_until(  # the chime, then 200 ms of silence
                    lambda: (
                        bool(phone.spurts()) and phone.heard[-1].at - phone.spurts()[0][-1].at > 0.2
                    ),
                    20,
                    "the greeting",
                )
                await gateway.stop()
                assert await sipp.wait(15) == 0, sipp.report()
    heard = phone.audio()
    spurt = phone.spurts()[0]
    first_sound = phone.heard.index(spurt[0])
    reference = chime(8000)
    peak, lag = normalized_xcorr(reference, heard)
    seconds_in = spurt[0].at - phone.heard[0].at
    print(f"\ngreeting: chime correlation {peak:.3f}, heard {seconds_in:.2f} s after answer")
    assert peak >= 0.9
    assert abs(lag - first_sound * 160) <= 160  # the chime is the first sound of the call
    assert not np.any(heard[: first_sound * 160])  # nothing but silence before it
    events = fake.sessions[0].received
    for event in events:
        validate_client_event(event)
    creates = [e for e in events if e["type"] == "response.create"]
    assert creates == [{"type": "response.create", "response": {"instructions": greeting}}]
    assert events[0]["type"] == "session.update"
