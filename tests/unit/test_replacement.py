"""When a call's Realtime session is replaced: the link's sans-I/O rules, as tables."""

import math

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from gateway.realtime.client import RealtimeConnectError
from gateway.realtime.replacement import (
    MIN_SESSION_S,
    ReplacementPolicy,
    SessionEnd,
    reconnect_failure,
)

POLICY = ReplacementPolicy(max_session_s=1800.0, margin_s=60.0)
OPENED, NOW, WALL = 100.0, 100.0, 1_700_000_000.0  # monotonic open/now, wall-clock now


@pytest.mark.parametrize(
    ("code", "reconnects"),
    [
        (1000, False),  # a clean close: the service ended the session on purpose
        (1001, True),  # going away: the session limit
        (1006, True),  # the socket died
        (1008, False),  # policy violation
        (1011, True),
        (1012, True),
        (1013, True),
        (4000, False),
    ],
)
def test_only_the_codes_the_sdk_reconnects_on_get_a_new_session(code: int, reconnects: bool):
    assert POLICY.reconnects(code) is reconnects


@pytest.mark.parametrize(
    ("expires_at", "end"),
    [
        (None, SessionEnd(OPENED + 1800.0)),  # nothing announced: our limit
        ("soon", SessionEnd(OPENED + 1800.0)),  # not a number: not a time
        (True, SessionEnd(OPENED + 1800.0)),  # a bool is no time either
        (WALL + 600, SessionEnd(OPENED + 600.0)),  # sooner than our limit: believed
        (WALL + 600.5, SessionEnd(OPENED + 600.5)),
        (WALL + 7200, SessionEnd(OPENED + 1800.0)),  # later than our limit: ours holds
        (WALL + MIN_SESSION_S, SessionEnd(OPENED + MIN_SESSION_S)),  # just long enough
        (WALL + 1, SessionEnd(OPENED + 1800.0, 1.0)),  # too soon: ignored, logged
        (WALL - 30, SessionEnd(OPENED + 1800.0, -30.0)),  # in the past (a clock far off)
        (math.inf, SessionEnd(OPENED + 1800.0, "inf")),
        (-math.inf, SessionEnd(OPENED + 1800.0, "-inf")),
        (math.nan, SessionEnd(OPENED + 1800.0, "nan")),
        (10**400, SessionEnd(OPENED + 1800.0, "inf")),  # beyond a float: no crash
        (-(10**400), SessionEnd(OPENED + 1800.0, "-inf")),
    ],
)
def test_a_session_ends_at_our_limit_or_the_believable_expiry_announced(
    expires_at: object, end: SessionEnd
) -> None:
    assert POLICY.session_end(OPENED, expires_at, now=NOW, wall_now=WALL) == end


def test_the_announced_expiry_is_read_against_the_clocks_of_now() -> None:
    # Opened 10 s ago (monotonic); the service says 590 s from now (wall clock).
    end = POLICY.session_end(OPENED, WALL + 590, now=OPENED + 10, wall_now=WALL)
    assert end == SessionEnd(OPENED + 600.0)


@pytest.mark.parametrize(
    ("opened_at", "ends_at", "margin_s", "times"),
    [
        (0.0, 1800.0, 60.0, (1740.0, 1785.0)),  # Azure's 30 min with the default margin
        (0.0, 3600.0, 60.0, (3540.0, 3585.0)),  # OpenAI's 60 min
        (100.0, 104.0, 60.0, (102.0, 103.5)),  # 4 s sessions: half-way, never at once
        (100.0, 100.0, 60.0, (100.0, 100.0)),  # no life left: now
        (100.0, 90.0, 60.0, (90.0, 90.0)),  # already over: no negative margin
        (0.0, 1800.0, 0.0, (1800.0, 1800.0)),  # no margin: at the end
    ],
)
def test_the_next_session_opens_a_margin_ahead_and_the_switch_is_forced_a_quarter_ahead(
    opened_at: float, ends_at: float, margin_s: float, times: tuple[float, float]
) -> None:
    policy = ReplacementPolicy(max_session_s=1800.0, margin_s=margin_s)
    assert policy.rollover_times(opened_at, ends_at) == times


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), "no new session within 2 s: timed out"),
        (
            RealtimeConnectError("handshake refused with HTTP 429: quota", status=429),
            "no new session within 2 s: handshake refused with HTTP 429: quota",
        ),
        (
            ConnectionClosedError(Close(1011, "boom"), None),
            "no new session within 2 s: the new session closed "
            "(received 1011 (internal error) boom; no close frame sent)",
        ),
    ],
)
def test_a_failed_reconnect_says_why(exc: BaseException, reason: str) -> None:
    assert reconnect_failure(exc) == reason  # type: ignore[arg-type]
