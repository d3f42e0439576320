"""The time guards as tables: the moment given, what each answers."""

from gateway.bridge.guards import GOODBYE, STILL_THERE, WRAP_UP, SilenceGuard, WrapUp


def test_wrap_up_is_said_once_wrap_up_s_before_the_end() -> None:
    guard = WrapUp(max_call_s=600, wrap_up_s=30)
    guard.answered(100.0)
    assert guard.deadline == 670.0
    assert [guard.due(t) for t in (100.0, 669.9)] == [None, None]
    assert guard.due(670.0) == WRAP_UP.format(seconds=30)
    assert guard.due(671.0) is None and guard.deadline is None


def test_no_wrap_up_when_it_is_off() -> None:
    guard = WrapUp(max_call_s=600, wrap_up_s=0)
    guard.answered(0.0)
    assert guard.deadline is None and guard.due(10_000.0) is None


def test_a_silent_caller_is_asked_twice_then_bidden_goodbye() -> None:
    guard = SilenceGuard(timeout_s=8, prompts=2)
    assert guard.due(1_000.0) is None  # the agent has not spoken yet: nothing runs
    guard.agent_quiet(10.0)
    asked = STILL_THERE.format(seconds=8)
    table = [
        (17.9, None),
        (18.0, ("prompt", asked)),
        (19.0, None),  # the count waits for the agent's question to end
    ]
    for now, expected in table:
        assert guard.due(now) == expected, now
    guard.agent_talking()
    guard.agent_quiet(21.0)
    assert guard.due(29.0) == ("prompt", asked)
    guard.agent_quiet(31.0)
    assert guard.due(39.0) == ("goodbye", GOODBYE)
    guard.agent_quiet(41.0)  # the goodbye itself: nothing after it
    assert guard.deadline is None and guard.due(1_000.0) is None


def test_the_caller_speaking_starts_the_count_again() -> None:
    guard = SilenceGuard(timeout_s=5, prompts=2)
    guard.agent_quiet(0.0)
    assert guard.due(5.0) is not None
    guard.agent_quiet(6.0)
    assert guard.due(11.0) is not None  # the second prompt
    guard.caller_active()
    assert guard.deadline is None  # the caller talks: no count while the agent answers
    guard.agent_quiet(20.0)
    assert guard.due(25.0) == ("prompt", STILL_THERE.format(seconds=5))  # a first prompt again
    guard.agent_quiet(26.0)
    assert guard.due(31.0) == ("prompt", STILL_THERE.format(seconds=5))  # and a second one
    guard.agent_quiet(32.0)
    assert guard.due(37.0) == ("goodbye", GOODBYE)


def test_a_wrap_up_under_a_second_is_told_and_one_as_long_as_the_call_is_not() -> None:
    short = WrapUp(max_call_s=600, wrap_up_s=0.5)
    short.answered(0.0)
    assert short.deadline == 599.5
    whole = WrapUp(max_call_s=600, wrap_up_s=600)
    whole.answered(0.0)
    assert whole.deadline is None and whole.due(600.0) is None
