"""Local barge-in's voice detector in a real call: noise leaves the agent talking, a word stops it.

The service's own VAD is set to its least sensitive (-30 dBFS), so that only the gateway's
detector can pause the agent on the noise; the gateway's log says each local pause.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.unit.test_voice_onset import bangs, dtmf, level, wav

from .peers import missing_peer_tools
from .rtp_caller import RtpCaller
from .test_echo import call

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_peer_tools("sipp")), reason="needs sipp"),
]

NOISE = np.concatenate(
    (
        level(wav("vad_pink.wav").astype(np.float64), -35.0),
        level(wav("vad_babble.wav").astype(np.float64), -35.0),
    )
)
WORD = level(wav("vad_no.wav").astype(np.float64), -25.0)


async def noise_then_no(phone: RtpCaller, noise: np.ndarray = NOISE) -> None:
    await phone.wait_until(lambda: phone.sound_packets >= 25, 20, "0.5 s of the answer")
    heard = len(phone.heard)
    phone.say(noise)  # NOISE: 5 s of pink noise and babble at -35 dBFS
    end = heard + len(noise) // 160 + 10  # a packet every 20 ms: the noise's clock
    await phone.wait_until(lambda: len(phone.heard) >= end, 20, "the noise to be played")
    assert len(phone.spurts()) == 1, "the noise paused the agent"
    phone.say(WORD)
    await phone.wait_until(lambda: len(phone.spurts()) > 1, 20, "the agent to pause")


# Key tones (in band) and door bangs, 9 dB past a -42 dBFS gate and under the service's VAD
LOUD = np.concatenate((dtmf(3.0, -33.0), bangs(3.0, -33.0)))


async def test_key_tones_and_bangs_past_the_gate_leave_the_agent_talking(tmp_path: Path) -> None:
    """WebRTC's detector takes them for a voice (they paused the agent before the cues); the
    cues (a key tone never counts, an onset needs a voiced frame) do not, and "no" still
    stops it."""
    agent = {
        "local_barge_in": {"threshold": 0.7, "below_caller_db": None},  # the gate: -42 dBFS
        "turn_detection": {"type": "server_vad", "threshold": 1.0},
    }

    async def script(phone: RtpCaller) -> None:
        await noise_then_no(phone, LOUD)

    async with RtpCaller() as phone:
        _, gateway = await call(tmp_path, phone, agent, script)
    paused = gateway.find("call.local_barge_in_confirmed") + gateway.find(
        "call.local_barge_in_unconfirmed"
    )
    assert len(paused) == 1  # the word, and nothing else


async def test_noise_leaves_the_agent_talking_and_the_word_no_stops_it(tmp_path: Path) -> None:
    agent = {"turn_detection": {"type": "server_vad", "threshold": 1.0}}  # local: the default
    async with RtpCaller() as phone:
        _, gateway = await call(tmp_path, phone, agent, noise_then_no)
    paused = gateway.find("call.local_barge_in_confirmed") + gateway.find(
        "call.local_barge_in_unconfirmed"
    )
    first = phone.spurts()[0]
    ms = (first[-1].at - phone.speech_sent_at[-1]) * 1000
    print(f"\nvoice detector: 5 s of noise, no pause; 'no' at -25 dBFS paused it in {ms:.0f} ms")
    assert len(paused) == 1  # the word, and nothing else
    assert 0 < ms < 250


def words(dbfs: float) -> np.ndarray:
    """ "No" and "wait", twice, with short pauses: about 2 s of one voice."""
    gap = np.zeros(1600)
    parts = [wav("vad_no.wav"), gap, wav("vad_wait.wav"), gap] * 2
    return level(np.concatenate([p.astype(np.float64) for p in parts]), dbfs)


TV = words(-36.0)  # past the -42 dBFS threshold, 16 dB under the caller; the service misses it
CALLER = words(-20.0)


async def tv_then_no(phone: RtpCaller) -> None:
    await phone.wait_until(lambda: phone.sound_packets >= 25, 20, "0.5 s of the answer")
    heard = len(phone.heard)
    phone.say(TV)
    end = heard + len(TV) // 160 + 10
    await phone.wait_until(lambda: len(phone.heard) >= end, 20, "the TV to be played")
    if len(phone.spurts()) > 1:
        return  # the TV paused the agent (the test says so)
    phone.say(level(wav("vad_no.wav").astype(np.float64), -20.0))
    await phone.wait_until(lambda: len(phone.spurts()) > 1, 20, "the agent to pause")


@pytest.mark.parametrize("below_caller_db", [7.0, None])
async def test_a_voice_15_db_under_the_caller_does_not_pause_the_agent(
    tmp_path: Path, below_caller_db: float | None
) -> None:
    """The caller asked at -20 dBFS; a TV at -36 dBFS (past a -42 dBFS threshold, under the
    service's VAD at -30) then talks through the answer. With the gate following the caller it
    leaves the agent talking and the caller's "no" stops it; with the threshold alone (null)
    the TV pauses it."""
    agent = {
        "local_barge_in": {"threshold": 0.7, "below_caller_db": below_caller_db},
        "turn_detection": {"type": "server_vad", "threshold": 1.0},
    }
    async with RtpCaller() as phone:
        _, gateway = await call(tmp_path, phone, agent, tv_then_no, ask=CALLER)
    paused = gateway.find("call.local_barge_in_confirmed") + gateway.find(
        "call.local_barge_in_unconfirmed"
    )
    first = phone.spurts()[0]
    if below_caller_db is None:
        assert paused and first[-1].at < phone.speech_sent_at[-1] + len(TV) / 8000
        return
    ms = (first[-1].at - phone.speech_sent_at[-1]) * 1000
    print(f"\ncaller at -20 dBFS, TV at -36: no pause; 'no' paused it in {ms:.0f} ms")
    assert len(paused) == 1  # the caller's word, not the TV
    assert 0 < ms < 250
