"""Barge-in end to end: SIPp places the call, a Python phone (real UDP socket) talks over a
long answer of the fake Realtime service, through the real gateway process.

The phone hears the answer stop; the service gets a `conversation.item.truncate` whose
`audio_end_ms` is what the phone really heard, counted packet by packet on the wire.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.agent import EmbeddedRealtimeServer
from gateway.realtime.protocol import PCM16_RATE
from tests.realtime_schema import validate_client_event

from .gateway_proc import GatewayProcess
from .peers import missing_peer_tools
from .rtp_caller import RtpCaller, voice
from .scenarios import sipp_dial

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_peer_tools("sipp")), reason="needs sipp"),
]

# The fake shares its event loop with the test's phones: a stall of a few tens of ms there
# (a GC pass) between its first and second delta would leave a gap in playback that a
# faster-sending service never causes. 20x real time keeps the fake ahead of the pacer, and
# 30 s of answer keeps the response in progress (generated over 1.5 s) when the caller
# talks over it, so that response.cancel is exercised too.
ANSWER_S = 30.0
BURST = 20.0
ANSWER_TEXT = "This is a long answer that goes on and on so that the caller can talk over it."


def long_answer() -> tuple[Any, str]:
    return voice(ANSWER_S, 180.0, -18.0, PCM16_RATE), ANSWER_TEXT


def gateway_config(fake: EmbeddedRealtimeServer, **agent: Any) -> dict[str, Any]:
    return {
        "realtime": {"url": fake.url, "auth": {"method": "none"}},
        "agent": {"input_transcription": {}, **agent},
        "service": {"drain_timeout_s": 0},  # stopping the gateway hangs up at once (BYE)
    }


def client_events(fake: EmbeddedRealtimeServer, kind: str) -> list[dict[str, Any]]:
    events = fake.sessions[0].received
    for event in events:
        validate_client_event(event)  # every event the gateway sent, strictly
    return [e for e in events if e["type"] == kind]


async def test_talking_over_a_long_answer_stops_it_and_truncates_at_what_was_heard(
    tmp_path: Path,
) -> None:
    transcripts = tmp_path / "transcripts"
    async with (
        EmbeddedRealtimeServer(answer=long_answer(), burst_speed=BURST) as fake,
        RtpCaller() as phone,
        GatewayProcess(
            tmp_path, {**gateway_config(fake), "records": {"transcripts_dir": str(transcripts)}}
        ) as gateway,
    ):
        async with sipp_dial(tmp_path / "sipp", gateway.port, phone.port) as sipp:
            await phone.wait_until(lambda: bool(phone.heard), 15, "the gateway's first packet")
            phone.say(voice(1.0, 120.0))  # a question
            await phone.wait_until(lambda: phone.sound_packets >= 40, 20, "0.8 s of the answer")
            phone.say(voice(1.5, 120.0))  # talk over the answer
            # The next answer starts only after the service handled the truncate (one socket,
            # in order), so once it is heard everything below is settled.
            await phone.wait_until(lambda: len(phone.spurts()) >= 2, 20, "the second answer")
            await gateway.stop()
            assert await sipp.wait(15) == 0, sipp.report()

    first = phone.spurts()[0]
    heard_ms = len(first) * 20
    truncates = client_events(fake, "conversation.item.truncate")
    cancels = client_events(fake, "response.cancel")
    barge_in = gateway.find("call.barge_in")
    print(
        f"\nheard {heard_ms} ms of a {ANSWER_S:.0f} s answer; truncate {truncates}; "
        f"answer stopped {(first[-1].at - phone.speech_sent_at[1]) * 1000:.0f} ms after "
        "the caller started talking"
    )
    assert len(truncates) == 1 and len(barge_in) == 1
    truncate = truncates[0]
    assert truncate["item_id"] == barge_in[0]["item_id"] and truncate["content_index"] == 0
    assert abs(truncate["audio_end_ms"] - heard_ms) <= 20
    assert 800 <= heard_ms < ANSWER_S * 1000 - 2000, "the answer was not cut"
    # It stopped while the caller was still talking, not at its own end.
    assert first[-1].at < phone.speech_sent_at[1] + 1.5
    assert len(cancels) == 1
    # The fake had already cancelled on its own VAD (interrupt_response): the extra cancel
    # earns a benign error, logged at debug level, never a warning.
    assert not gateway.find("realtime.error", level="warning")

    [path] = list(transcripts.glob("*.jsonl"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["event"] == "answered" and lines[-1]["event"] == "ended"
    assert lines[-1]["reason"] == "drain_timeout"  # the gateway's stop hung up
    turns = [line for line in lines if line["type"] == "turn"]
    agent = [t for t in turns if t["role"] == "agent"]
    caller = [t for t in turns if t["role"] == "caller"]
    assert len(caller) >= 2 and all(t["text"].startswith("(caller audio") for t in caller)
    cut = agent[0]
    assert cut["interrupted"] and cut["heard_ms"] == truncate["audio_end_ms"]
    assert cut["item_id"] == truncate["item_id"] and cut["full_text"] == ANSWER_TEXT
    assert ANSWER_TEXT.startswith(cut["text"]) and len(cut["text"]) < len(ANSWER_TEXT) / 2
    # The second answer was cut by the end of the call: still written, as heard.
    assert len(agent) == 2 and agent[1]["interrupted"] and agent[1]["heard_ms"] > 0
    assert caller[0]["offset_s"] < agent[0]["offset_s"] < caller[1]["offset_s"]
