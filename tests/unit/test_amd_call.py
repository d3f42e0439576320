"""Answering-machine detection in the call's core (CallCore with an AnswerScreen): what each
decision makes the core send, and the voicemail left and hung up after. No sockets, no
sleeps: audio frames and time are passed in."""

from __future__ import annotations

import numpy as np

from gateway.bridge.core import SPEAK, CallCore, HangUp
from gateway.bridge.model_audio import ModelAudio
from gateway.bridge.playback import Playback
from gateway.bridge.screening import TOLD, VOICEMAIL_LEFT, AnswerScreen, Decided, LeaveMessage
from gateway.bridge.transcript import TranscriptLog
from gateway.bridge.uplink import CallerAudio
from gateway.config import AgentConfig, AmdConfig, DtmfConfig
from gateway.media.g711 import PCMU
from gateway.metrics import CallProbe
from gateway.realtime import protocol as rt
from gateway.realtime.conversation import Conversation

from .test_amd import FRAME, RATE, burst, silence, tone
from .test_call_core import Log

MESSAGE = "This is Acme Dental: your appointment is tomorrow at nine."


def core(mode: str, greeting: str | None = "Greet them.", **amd) -> CallCore:
    cfg = AmdConfig(mode=mode, voicemail_message=MESSAGE, **amd)
    log = Log()
    transcript = TranscriptLog(None, log, clock=lambda: 0.0, wall=lambda: 0.0)
    playback = Playback(160, on_finished=transcript.agent_played, clock=lambda: 0.0)
    return CallCore(
        playback,
        ModelAudio(playback, PCMU, passthrough=True),
        transcript=transcript,
        conversation=Conversation(rt.bytes_per_ms("g711")),
        dtmf=DtmfConfig(),
        log=log,
        probe=CallProbe(),
        greeting=greeting,
        silence_timeout_s=5.0,
        screen=AnswerScreen(mode, cfg),
    )


def feed(c: CallCore, signal: np.ndarray, t0: float = 0.0) -> list:
    """The callee's frames on their own clock, the core ticked at its deadlines."""
    out: list = []
    for i in range(0, len(signal), FRAME):
        now = t0 + (i + FRAME) / RATE
        deadline = c.deadline(now)
        if deadline is not None and now >= deadline:
            out += c.tick(now)
        out += c.callee_audio(signal[i : i + FRAME], now)
    return out


def test_a_human_hears_the_greeting_only_once_the_decision_is_made() -> None:
    c = core("detect")
    assert c.start(0.0) == ()  # no greeting yet: the answer is being screened
    assert c.deadline(0.0) == 5.5  # at most the analysis time (and its slack)
    assert not c.screen.passing
    out = feed(c, np.concatenate([burst(0.5), silence(2)]))
    decided, told, greeting = out
    assert isinstance(decided, Decided) and decided.decision.result == "human"
    assert told == rt.AddText("system", TOLD["human"])
    assert greeting == rt.CreateResponse("Greet them.")
    assert c.screen.passing and c.responding


def test_a_machine_in_detect_mode_is_told_and_the_model_answers_when_its_turn_comes() -> None:
    c = core("detect")
    c.start(0.0)
    out = feed(c, np.concatenate([silence(0.2), burst(3.0)]))
    assert [type(x) for x in out] == [Decided, rt.AddText]
    assert out[1] == rt.AddText("system", TOLD["machine"])
    assert c.screen.passing and not c.responding


def test_no_greeting_configured_the_agent_still_speaks_first_to_a_human() -> None:
    c = core("detect", greeting=None)
    c.start(0.0)
    out = feed(c, np.concatenate([burst(0.5), silence(2)]))
    assert out[-1] == rt.CreateResponse(None)


def test_voicemail_speaks_the_message_after_the_beep_and_hangs_up_after_the_words() -> None:
    c = core("voicemail")
    c.start(0.0)
    greeting = np.concatenate([silence(0.2), burst(3.0), silence(0.4), tone(1000, 0.5)])
    out = feed(c, np.concatenate([greeting, silence(1.0)]))
    decided, left, speak = out
    assert isinstance(decided, Decided) and decided.waits_for_beep
    assert isinstance(left, LeaveMessage) and left.after == "beep"
    assert speak == rt.CreateResponse(SPEAK.format(text=MESSAGE))
    assert not c.screen.passing  # the machine never reaches the model, not even now
    # The message plays; once it has been heard, the call ends.
    c.server_event(rt.ResponseStarted("resp_1"), 5.0)
    c.audio_delta(rt.AudioDelta("resp_1", "item_1", 0, b"\xff" * 8 * 60))
    c.server_event(rt.ResponseDone("resp_1", "completed", None, {}), 5.1)
    due: list = []
    for _ in range(4):
        c.next_frame()
        due += c.take_due()
    assert due == [HangUp(VOICEMAIL_LEFT)]
    assert c.hang_up == HangUp(VOICEMAIL_LEFT)


def test_voicemail_without_a_beep_leaves_the_message_on_the_timer_after_the_greeting() -> None:
    c = core("voicemail", no_beep_silence_ms=1000)
    c.start(0.0)
    out = feed(c, np.concatenate([silence(0.2), burst(3.0)]))
    assert [type(x) for x in out] == [Decided]
    assert c.deadline(3.2) == 3.2 + 1.0  # the greeting's end plus the silence
    # No packets at all from now on: the timer alone leaves the message.
    assert c.tick(4.1) == ()
    left, speak = c.tick(4.2)
    assert isinstance(left, LeaveMessage) and left.after == "silence"
    assert speak == rt.CreateResponse(SPEAK.format(text=MESSAGE))


def test_the_silence_guard_does_not_prompt_while_the_answer_is_screened() -> None:
    c = core("voicemail", beep_timeout_s=30.0)
    c.start(0.0)
    feed(c, np.concatenate([silence(0.2), burst(20.0)]))  # a very long greeting
    told = [x for x in c.tick(20.3) if isinstance(x, rt.AddText)]
    assert told == []  # silence_timeout_s is 5, yet nobody is asked whether they are there


def test_no_audio_at_all_is_unknown_and_the_agent_speaks() -> None:
    c = core("detect")
    c.start(100.0)
    assert c.tick(105.4) == ()
    decided, told, greeting = c.tick(105.5)
    assert decided.decision.result == "unknown" and decided.decision.cause == "noaudio"
    assert told == rt.AddText("system", TOLD["unknown"]) and greeting.instructions


def test_without_a_screen_the_greeting_goes_at_the_answer_as_before() -> None:
    c = core("detect")
    c.screen = None
    assert c.start(0.0) == [rt.CreateResponse("Greet them.")]
    assert c.callee_audio(silence(0.02), 0.0) == ()


def test_the_uplinks_tap_sees_the_callees_pcm_and_holds_back_what_it_refuses() -> None:
    seen: list[np.ndarray] = []
    passing = [False]

    def tap(pcm: np.ndarray) -> bool:
        seen.append(pcm)
        return passing[0]

    for passthrough in (True, False):
        seen.clear()
        uplink = CallerAudio(PCMU, passthrough, AgentConfig(), 20, None, lambda: None, tap)
        payload = bytes(PCMU.encode(burst(0.02)))
        passing[0] = False
        assert uplink.convert(payload, talking=False) == b""  # held back from the model
        passing[0] = True
        audio = uplink.convert(payload, talking=False)
        expected = payload if passthrough else 160 * 3 * 2  # G.711 as is, or 24 kHz PCM16
        assert (audio if passthrough else len(audio)) == expected
        assert len(seen) == 2 and np.array_equal(seen[0], PCMU.decode(payload))
