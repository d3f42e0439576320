"""SessionTurns.observe's answer: True only for the events that can move the session in or
out of a pause, so the link re-checks a switch only then (50 audio deltas a second do not)."""

from __future__ import annotations

import pytest

from gateway.realtime import protocol as rt
from gateway.realtime.turns import SessionTurns


@pytest.mark.parametrize(
    ("event", "may_change"),
    [
        (rt.AudioDelta("r1", "a1", 0, b"\x00"), False),
        (rt.AudioDone("r1", "a1"), False),
        (rt.Transcript("agent", "a1", "hi"), False),
        (rt.ServiceError("x", "y"), False),
        (rt.SpeechStarted(0, "u1"), True),
        (rt.SpeechStopped(100, "u1"), True),
        (rt.ResponseStarted("r2"), True),
        (rt.ResponseDone("r2", "completed", None), True),
    ],
)
def test_observe_says_when_the_pause_may_have_changed(event, may_change: bool) -> None:
    turns = SessionTurns(True)
    turns.observe(rt.ResponseStarted("r1"))
    assert turns.observe(event) is may_change


def test_audio_done_before_any_answer_is_taken_quietly() -> None:
    """A new session's first events may close an item of the session it replaced."""
    turns = SessionTurns(False)
    assert turns.observe(rt.AudioDone("r0", "a0")) is False
    assert turns.cut_off() == [] and turns.at_pause
