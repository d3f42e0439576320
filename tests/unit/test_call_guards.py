"""The wrap-up and the silence guard inside the call's core: when the model is told, what
it is told, and that the silent caller's call ends only after the agent's goodbye is heard."""

from __future__ import annotations

from gateway.bridge.call_limits import CallLimits
from gateway.bridge.ending import HangUp
from gateway.bridge.guards import GOODBYE, STILL_THERE, WRAP_UP
from gateway.realtime import protocol as rt

from .test_call_core import Call, audio, call


def told(text: str) -> list[object]:
    return [rt.AddText("system", text), rt.CreateResponse(None)]


def speak(c: Call, response: str, now: float, ms: int) -> None:
    """The agent answers at ``now``: ``ms`` of audio arrive, then response.done."""
    c.core.server_event(rt.ResponseStarted(response), now)
    c.core.audio_delta(audio(response, f"{response}_a", ms))
    c.core.server_event(rt.ResponseDone(response, "completed", None), now)


def play_out(c: Call) -> list[object]:
    """Every buffered frame sent; what became due meanwhile."""
    due: list[object] = []
    for _ in range(10_000):
        frame = c.core.next_frame()
        due += c.core.take_due()
        if frame is None:
            return due
    raise AssertionError("playback never ended")


def test_the_model_is_told_to_wrap_up_before_the_longest_duration() -> None:
    c = call(limits=CallLimits(600, 600, wrap_up_s=30))
    c.core.start(1000.0)
    assert c.core.deadline(1000.0) == 1570.0
    assert list(c.core.tick(1569.9)) == []
    assert list(c.core.tick(1570.0)) == told(WRAP_UP.format(seconds=30))
    assert c.core.deadline(1570.0) == 1600.0  # told once; the end itself stays
    assert list(c.core.tick(1600.0)) == [HangUp("max_call_duration")]
    assert [line["kind"] for line in c.log.find("call.guard")] == ["wrap_up"]


def test_no_wrap_up_when_the_call_cannot_last_longer_than_it() -> None:
    c = call(limits=CallLimits(20, 600, wrap_up_s=30))
    c.core.start(0.0)
    assert c.core.deadline(0.0) == 20.0
    assert list(c.core.tick(20.0)) == [HangUp("max_call_duration")]
    assert c.log.find("call.guard") == []


def test_a_silent_caller_is_asked_twice_then_the_call_ends_after_the_goodbye() -> None:
    c = call(silence_timeout_s=5)
    c.core.start(0.0)  # no greeting: the count runs from the answer
    assert c.core.deadline(0.0) == 5.0
    asked = told(STILL_THERE.format(seconds=5))
    assert list(c.core.tick(5.0)) == asked
    assert c.core.deadline(5.0) is None  # nothing counts while the question is asked
    speak(c, "r1", 5.5, ms=1000)  # its audio is heard until 6.5
    assert c.core.deadline(5.5) == 11.5
    assert play_out(c) == []
    assert list(c.core.tick(11.5)) == asked
    speak(c, "r2", 12.0, ms=500)
    assert play_out(c) == []
    assert list(c.core.tick(17.5)) == told(GOODBYE)
    assert c.core.deadline(17.5) is None
    speak(c, "r3", 18.0, ms=800)
    assert play_out(c) == [HangUp("silence_timeout")]  # once the goodbye is heard
    kinds = [line["kind"] for line in c.log.find("call.guard")]
    assert kinds == ["prompt", "prompt", "goodbye"]


def test_speech_or_a_key_starts_the_count_again_and_a_tool_pauses_it() -> None:
    c = call(silence_timeout_s=5)
    c.core.start(0.0)
    assert list(c.core.tick(5.0)) == told(STILL_THERE.format(seconds=5))
    speak(c, "r1", 5.0, ms=200)
    play_out(c)
    c.core.server_event(rt.SpeechStarted(0, "u1"), 6.0)  # the caller answers
    assert c.core.deadline(6.0) is None
    speak(c, "r2", 7.0, ms=200)
    assert c.core.deadline(7.0) == 12.2
    play_out(c)
    c.core.key("5", 8.0)
    assert c.core.deadline(8.0) == 9.5  # the keypad entry's pause; the count is gone
    keys = c.core.tick(9.5)
    assert [type(command) for command in keys] == [rt.AddText, rt.CreateResponse]
    assert keys[0].role == "user"  # type: ignore[union-attr]
    assert c.core.deadline(12.2) is None  # no prompt where the count would have ended
    speak(c, "r3", 13.0, ms=0)
    assert c.core.deadline(13.0) == 18.0
    c.core.server_event(rt.FunctionCall("r4", "fc1", "call_1", "lookup", "{}"), 13.5)
    assert c.core.deadline(13.5) is None  # the agent works: not the caller's silence
    speak(c, "r4", 14.0, ms=0)  # the answer after the tool's output
    assert list(c.core.tick(19.0)) == told(STILL_THERE.format(seconds=5))  # a first prompt


def test_a_held_call_is_not_silent() -> None:
    c = call(limits=CallLimits(3600, 600), silence_timeout_s=5)
    c.core.start(0.0)
    c.core.hold(True, 2.0)
    assert c.core.deadline(2.0) == 602.0  # the hold timeout only
    assert list(c.core.tick(10.0)) == []
    c.core.hold(False, 30.0)
    assert c.core.deadline(30.0) == 35.0
    assert list(c.core.tick(35.0)) == told(STILL_THERE.format(seconds=5))


def test_no_guard_talks_over_a_call_that_is_ending() -> None:
    c = call(silence_timeout_s=5)
    c.core.start(0.0)
    c.core.hang_up_after_words()
    assert c.core.deadline(0.0) is None
    assert list(c.core.tick(100.0)) == []


def test_an_answer_cut_by_the_caller_starts_no_count_while_they_talk() -> None:
    """The caller barges in: the cancelled answer's response.done (after speech_started)
    must not start the count, or a caller talking longer than the timeout would be asked
    whether they are still there."""
    c = call(silence_timeout_s=5)
    c.core.start(0.0)
    c.core.server_event(rt.ResponseStarted("r1"), 1.0)
    c.core.audio_delta(audio("r1", "r1_a", 1000))
    c.core.server_event(rt.SpeechStarted(0, "u1"), 1.2)
    c.core.server_event(rt.ResponseDone("r1", "cancelled", "turn_detected"), 1.3)
    assert c.core.deadline(1.3) is None
    assert list(c.core.tick(30.0)) == []  # a long turn of the caller's: no question


def test_a_resume_during_an_answer_waits_for_its_end() -> None:
    c = call(silence_timeout_s=5)
    c.core.start(0.0)
    c.core.server_event(rt.ResponseStarted("r1"), 1.0)
    c.core.hold(True, 2.0)
    c.core.hold(False, 3.0)  # the answer is still being made: no count yet
    assert c.core.deadline(3.0) is None
    c.core.audio_delta(audio("r1", "r1_a", 2000))
    c.core.server_event(rt.ResponseDone("r1", "completed", None), 4.0)
    assert c.core.deadline(4.0) == 11.0  # its 2 s of audio heard, then 5 s
