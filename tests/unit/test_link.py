"""When a Realtime session is rolled over to the next one."""

from gateway.realtime.link import rollover_times


def test_rollover_times_follow_the_margin_but_never_loop_on_short_sessions() -> None:
    # A 30-minute Azure session with the default 60 s margin.
    assert rollover_times(0.0, 1800.0, 60.0) == (1740.0, 1785.0)
    # A service announcing 4 s sessions: the next one opens half-way, not at once.
    opens, force = rollover_times(100.0, 104.0, 60.0)
    assert (opens, force) == (102.0, 103.5)
    assert 100.0 < opens < force < 104.0
