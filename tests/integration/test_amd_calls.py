"""Answering-machine detection on real calls: a real gateway process, SIPp for signalling, a
Python RTP phone playing espeak-ng at telephone quality, the embedded Realtime agent, a real
events receiver.

* voicemail: the phone is a machine (a greeting, then a beep, then the silence of a
  recording). The model hears none of it; after the beep the agent is asked to speak the
  profile's message word for word, its audio reaches the phone, and the gateway hangs up
  after it (BYE, end reason voicemail_left, the record saying how).
* detect: the phone is a person ("Hello?", then waiting). call.amd says human, the model is
  told, and the agent's greeting goes only then; the person's audio reaches the model from
  the decision on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.agent import EmbeddedRealtimeServer
from gateway.bridge.core import SPEAK
from gateway.bridge.screening import TOLD
from tests.perf import amd_set

from .event_receiver import SECRET, EventReceiver
from .gateway_proc import GatewayProcess
from .peers import missing_peer_tools
from .rtp_caller import RtpCaller
from .scenarios import sipp_dial
from .test_features import sent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_peer_tools("sipp")), reason="needs sipp"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
]

MESSAGE = "Hello, this is Acme Dental. Your appointment is tomorrow at nine. Goodbye."
GREETING = (
    "Hi, you've reached the voicemail of John Smith. I can't take your call right now, "
    "please leave a message after the tone."
)
RATE = amd_set.RATE


def config(fake: EmbeddedRealtimeServer, root: Path, url: str, **agent: Any) -> dict[str, Any]:
    return {
        "realtime": {"url": fake.url, "auth": {"method": "none"}},
        "agent": agent,
        "records": {"calls_dir": str(root / "calls")},
        "hooks": {
            "events": {
                "url": url,
                "secret_env": "EVENTS_SECRET",
                "outbox_dir": str(root / "outbox"),
                "retry_max_s": 0.5,
            }
        },
    }


def record_of(root: Path, call_id: str) -> dict[str, Any]:
    return json.loads((root / "calls" / f"{call_id}.json").read_text())


def line(text: str, lead_s: float) -> np.ndarray:
    speech = amd_set.at_level(amd_set.espeak(text, "en-us", 170), -18.0)
    return np.concatenate([amd_set.silence(lead_s), speech])


async def test_a_machine_gets_the_message_after_the_beep_then_the_bye(tmp_path: Path) -> None:
    greeting = line(GREETING, 0.3)
    beep = amd_set.tone(1000.0, 0.5, dbfs=-15.0)
    gap = amd_set.silence(0.5)
    machine = amd_set.telephone(np.concatenate([greeting, gap, beep, amd_set.silence(20)]), 3)
    beep_end_s = (len(greeting) + len(gap) + len(beep)) / RATE
    amd = {"mode": "voicemail", "voicemail_message": MESSAGE}
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone, EventReceiver() as events:
        cfg = config(fake, tmp_path, events.url, amd=amd, greeting="Greet the caller.")
        async with GatewayProcess(tmp_path, cfg, env={"EVENTS_SECRET": SECRET}) as gateway:
            sipp = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, timeout_ms=60_000)
            async with sipp:
                phone.say(machine)  # from the first packet the gateway sends: the answer
                decided = await gateway.wait_for("call.amd", timeout=20)
                left = await gateway.wait_for("call.voicemail", timeout=30)
                ended = await gateway.wait_for("call.ended", timeout=30)
                assert await sipp.wait(15) == 0, sipp.report()  # it got our BYE, said 200
            await events.wait_until(
                lambda r: "call.ended" in [e["type"] for e in r.delivered], 20, "call.ended"
            )
    assert decided["result"] == "machine" and decided["mode"] == "voicemail"
    assert left["after"] == "beep" and abs(left["ms"] - beep_end_s * 1000) < 400
    assert ended["reason"] == "voicemail_left"
    # The model heard nothing of the machine and was asked for one thing: the message.
    assert not sent(fake, "input_audio_buffer.append")
    created = sent(fake, "response.create")
    assert [c["response"].get("instructions") for c in created] == [SPEAK.format(text=MESSAGE)]
    # The agent's audio (the embedded agent's 0.6 s chime) reached the phone before the BYE,
    # and not before the beep: call.voicemail above says the gateway took the beep's end;
    # here, on the phone's clock (its first frame may go out late on a busy machine), the
    # audio came once most of the beep had been sent.
    started = phone.speech_sent_at[0]
    sound = [h.at - started for h in phone.heard if not h.is_silence(phone.codec.silence)]
    assert len(sound) >= 25 and min(sound) > beep_end_s - 0.2
    record = record_of(tmp_path, ended["call_id"])
    assert record["end_reason"] == "voicemail_left"
    assert record["amd"]["result"] == "machine" and record["amd"]["voicemail"]["after"] == "beep"
    [amd_event] = [e for e in events.delivered if e["type"] == "call.amd"]
    assert amd_event["data"]["result"] == "machine"
    assert amd_event["call_id"] == ended["call_id"]


async def test_a_person_is_detected_and_greeted_only_then(tmp_path: Path) -> None:
    hello = line("Hello?", 0.3)
    person = amd_set.telephone(np.concatenate([hello, amd_set.silence(20)]), 5)
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone, EventReceiver() as events:
        cfg = config(
            fake, tmp_path, events.url, amd={"mode": "detect"}, greeting="Greet the caller."
        )
        async with GatewayProcess(tmp_path, cfg, env={"EVENTS_SECRET": SECRET}) as gateway:
            sipp = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, timeout_ms=60_000)
            async with sipp:
                phone.say(person)
                decided = await gateway.wait_for("call.amd", timeout=20)
                await phone.wait_until(lambda: phone.sound_packets > 20, 15, "the greeting")
                await events.wait_until(
                    lambda r: "call.amd" in [e["type"] for e in r.delivered], 20, "call.amd"
                )
                await gateway.stop()
    hello_end_ms = len(hello) * 1000 / RATE
    assert decided["result"] == "human" and decided["cause"] == "human"
    # after_greeting_silence (800 ms) after the hello, give or take its quiet last frames
    assert hello_end_ms + 600 <= decided["ms"] < hello_end_ms + 1000
    [amd_event] = [e for e in events.delivered if e["type"] == "call.amd"]
    assert amd_event["data"] == {
        "mode": "detect",
        "result": "human",
        "cause": "human",
        "ms": decided["ms"],
        "metadata": {},
    }
    # Told first, then greeted; the person's audio goes to the model only after the decision.
    kinds = [e["type"] for e in sent(fake)]
    first_audio = kinds.index("input_audio_buffer.append")
    told = kinds.index("conversation.item.create")
    assert told < kinds.index("response.create") and told < first_audio
    [told_event] = sent(fake, "conversation.item.create")
    assert told_event["item"]["content"][0]["text"] == TOLD["human"]
    assert sent(fake, "response.create")[0]["response"]["instructions"] == "Greet the caller."
    # The greeting's audio came after the decision (800 ms of silence after the hello): not
    # over the person's hello. (The phone's clock starts at its first frame, which may go
    # out late on a busy machine: half the silence is the margin.)
    started = phone.speech_sent_at[0]
    sound = [h.at - started for h in phone.heard if not h.is_silence(phone.codec.silence)]
    assert min(sound) * 1000 > hello_end_ms + 400
