"""When a Realtime session is rolled over to the next one."""

import pytest

from gateway.realtime import protocol as rt
from gateway.realtime.replacement import rollover_times
from gateway.realtime.turns import MAX_ITEMS, SessionTurns


def test_rollover_times_follow_the_margin_but_never_loop_on_short_sessions() -> None:
    # A 30-minute Azure session with the default 60 s margin.
    assert rollover_times(0.0, 1800.0, 60.0) == (1740.0, 1785.0)
    # A service announcing 4 s sessions: the next one opens half-way, not at once.
    opens, force = rollover_times(100.0, 104.0, 60.0)
    assert (opens, force) == (102.0, 103.5)
    assert 100.0 < opens < force < 104.0


SPOKE = [rt.SpeechStarted(0, "u1"), rt.SpeechStopped(900, "u1")]
ANSWER = [
    rt.ResponseStarted("r1"),
    rt.AudioDelta("r1", "a1", 0, b"\x00"),
    rt.AudioDone("r1", "a1"),
    rt.ResponseDone("r1", "completed", None),
]


@pytest.mark.parametrize(
    ("answers_by_itself", "events", "at_pause"),
    [
        (True, [], True),
        (True, SPOKE[:1], False),  # the caller speaks
        (True, SPOKE, False),  # the service will answer by itself
        (False, SPOKE, True),  # turn_detection none / create_response off: nothing due
        (True, [*SPOKE, *ANSWER[:2]], False),  # the answer runs
        (True, [*SPOKE, *ANSWER], True),  # the answer is done
        (True, [*SPOKE, *ANSWER, rt.ServiceError("x", "y"), rt.Other("z")], True),
    ],
)
def test_a_session_is_at_a_pause_when_no_one_speaks_and_no_answer_is_due(
    answers_by_itself: bool, events: list[rt.ServerEvent], at_pause: bool
) -> None:
    turns = SessionTurns(answers_by_itself)
    for event in events:
        turns.observe(event)
    assert turns.at_pause is at_pause


@pytest.mark.parametrize(
    ("events", "cut_off"),
    [
        ([], []),
        (ANSWER, []),
        (
            [*ANSWER[:2], rt.AudioDelta("r1", "a2", 0, b"\x00")],
            [
                rt.AudioDone("r1", "a1"),
                rt.AudioDone("r1", "a2"),
                rt.ResponseDone("r1", "cancelled", "session_replaced"),
            ],
        ),
        (ANSWER[:3], [rt.ResponseDone("r1", "cancelled", "session_replaced")]),
    ],
)
def test_the_answer_a_replaced_session_was_giving_is_closed_once(events, cut_off) -> None:
    turns = SessionTurns(True)
    for event in events:
        turns.observe(event)
    assert turns.cut_off() == cut_off


def test_item_ids_are_remembered_within_a_bound() -> None:
    turns = SessionTurns(True)
    turns.observe(rt.ResponseStarted("r1"))
    for i in range(1000):
        turns.observe(rt.AudioDelta("r1", f"item_{i}", 0, b""))
    assert len(turns.items) == MAX_ITEMS and "item_999" in turns.items
    assert len(turns.response_items) == MAX_ITEMS
