"""A caller on a speakerphone: the agent's own voice comes back into the call.

The Python phone plays it back into the call at -10 dB, 100 ms later, as a speakerphone
does. Without echo suppression the service's VAD takes the echo for the caller and the agent
interrupts itself; with ``agent.echo_suppression`` the answer plays on, and the caller
talking over it still interrupts it. Local pre-emption (``agent.local_barge_in``) is tested
here too: it pauses the answer before the service reports the caller, and a cough that the
service ignores costs nothing of the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.agent import EmbeddedRealtimeServer

from .gateway_proc import GatewayProcess
from .peers import missing_peer_tools
from .rtp_caller import RtpCaller, voice
from .scenarios import sipp_dial
from .test_barge_in import ANSWER_S, BURST, client_events, gateway_config, long_answer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_peer_tools("sipp")), reason="needs sipp"),
]

ANSWER_PACKETS = int(ANSWER_S * 50)


async def call(
    tmp_path: Path,
    phone: RtpCaller,
    agent: dict[str, Any],
    script: Any,
    ask: np.ndarray | None = None,
) -> tuple[EmbeddedRealtimeServer, GatewayProcess]:
    """One call: the phone asks (`ask`, default a second of a voice at -20 dBFS),
    `script(phone)` runs during the answer, then hang up."""
    async with EmbeddedRealtimeServer(answer=long_answer(), burst_speed=BURST) as fake:
        async with GatewayProcess(tmp_path, gateway_config(fake, **agent)) as gateway:
            async with sipp_dial(tmp_path / "sipp", gateway.port, phone.port) as sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 120.0) if ask is None else ask)
                await phone.wait_until(lambda: bool(phone.spurts()), 20, "the answer")
                await script(phone)
                await gateway.stop()
                assert await sipp.wait(15) == 0, sipp.report()
    return fake, gateway


async def listen_then_talk_over(phone: RtpCaller) -> None:
    await phone.wait_until(
        lambda: phone.sound_packets >= 75 or len(phone.spurts()) > 1, 20, "1.5 s of the answer"
    )
    if len(phone.spurts()) == 1:  # the answer is still playing: talk over it
        phone.say(voice(1.5, 120.0))
        await phone.wait_until(lambda: len(phone.spurts()) > 1, 20, "the next answer")


async def test_without_echo_suppression_the_agent_interrupts_itself(tmp_path: Path) -> None:
    """The problem, reproduced: nobody talked over the agent, yet its answer was cut."""
    async with RtpCaller(echo_gain_db=-10, echo_delay_ms=100) as phone:
        fake, _ = await call(tmp_path, phone, {}, listen_then_talk_over)
    first = phone.spurts()[0]
    truncates = client_events(fake, "conversation.item.truncate")
    print(f"\nno suppression: the echo cut the answer after {len(first) * 20} ms")
    assert len(first) < 50 and truncates, "the echo did not interrupt the agent"
    assert len(phone.speech_sent_at) == 1  # the caller only asked


async def test_echo_suppression_keeps_the_answer_and_lets_the_caller_barge_in(
    tmp_path: Path,
) -> None:
    async with RtpCaller(echo_gain_db=-10, echo_delay_ms=100) as phone:
        fake, _ = await call(tmp_path, phone, {"echo_suppression": {}}, listen_then_talk_over)
    first = phone.spurts()[0]
    [truncate] = client_events(fake, "conversation.item.truncate")
    starts = fake.sessions[0].speech_started_at
    print(
        f"\nsuppression: answer heard {len(first) * 20} ms, cut by the caller "
        f"{(first[-1].at - phone.speech_sent_at[1]) * 1000:.0f} ms after they started"
    )
    assert len(starts) == 2  # the question and the barge-in: never the echo
    assert 75 <= len(first) < ANSWER_PACKETS - 50
    assert abs(truncate["audio_end_ms"] - len(first) * 20) <= 20
    assert first[-1].at < phone.speech_sent_at[1] + 1.5


async def cough_then_talk_over(phone: RtpCaller) -> None:
    await phone.wait_until(lambda: phone.sound_packets >= 25, 20, "0.5 s of the answer")
    phone.say(voice(0.07, 120.0, -14.0))  # too short for the service's VAD (100 ms)
    # Paused by the cough, then resumed: a second talk spurt of the same answer.
    await phone.wait_until(lambda: len(phone.spurts()) > 1, 20, "the answer to resume")
    await phone.wait_until(lambda: phone.sound_packets >= 75, 20, "1.5 s of the answer")
    phone.say(voice(1.5, 120.0))
    await phone.wait_until(lambda: len(phone.spurts()) > 2, 20, "the next answer")


async def test_local_barge_in_pauses_at_once_and_a_cough_costs_nothing(tmp_path: Path) -> None:
    agent = {"local_barge_in": {"detector": "energy", "confirm_ms": 400}}  # a cough pauses it
    async with RtpCaller() as phone:
        fake, gateway = await call(tmp_path, phone, agent, cough_then_talk_over)
    before, after, _ = phone.spurts()[:3]
    [truncate] = client_events(fake, "conversation.item.truncate")
    [unconfirmed] = gateway.find("call.local_barge_in_unconfirmed")
    [confirmed] = gateway.find("call.local_barge_in_confirmed")
    heard = 20 * (len(before) + len(after))
    gap_ms = (after[0].at - before[-1].at) * 1000
    print(
        f"\nlocal: cough paused the answer for {gap_ms:.0f} ms, then it resumed; the barge-in "
        f"was pre-empted {confirmed['lead_ms']} ms before the service's speech_started"
    )
    assert unconfirmed and 400 <= gap_ms < 1000
    assert len(fake.sessions[0].speech_started_at) == 2  # the service never heard the cough
    # Paused, not skipped: the answer went on from where it stopped, and the truncate counts
    # exactly what was heard across both spurts.
    assert abs(truncate["audio_end_ms"] - heard) <= 20
    assert confirmed["lead_ms"] > 0
