"""When a call's Realtime session is replaced (sans-I/O): the link's rules, time passed in.

* **reconnect** only after a close the SDK itself reconnects on (1001/1006/1011/1012/1013,
  REALTIME_PROTOCOL.md section 6), with a new session within RECONNECT_WITHIN_S;
* **rollover**: a session ends at our limit (``realtime.max_session_s``) or at the expiry the
  service announced (``session.expires_at``, wall-clock seconds), whichever is sooner. An
  announced expiry less than MIN_SESSION_S after the session opened (in the past: a clock far
  off, a service bug, a number too large to be a time) is not believed, or every new session
  would be rolled over at once, in a loop. The next session opens a margin ahead of the end,
  and the switch is forced a quarter margin ahead.

The link (:mod:`link`) and its rollover (:mod:`rollover`) carry these out with sockets and
timers; here they are plain functions of their inputs, tested as tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed

from .client import RealtimeConnectError

RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013})
RECONNECT_WITHIN_S = 2.0
MIN_SESSION_S = 2.0  # an announced expiry sooner than this after opening is not believed


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """When a session ends (monotonic), and an announced expiry that was not believed (its
    seconds from now, or its text when not a finite number), for the log."""

    at: float
    ignored: float | str | None = None


@dataclass(frozen=True, slots=True)
class ReplacementPolicy:
    """The limits one call's link replaces its sessions by."""

    max_session_s: float
    margin_s: float

    @staticmethod
    def reconnects(code: int) -> bool:
        """Does a session closed with `code` get a new one (else the call ends)?"""
        return code in RECONNECT_CODES

    def session_end(
        self, opened_at: float, expires_at: object, *, now: float, wall_now: float
    ) -> SessionEnd:
        """When a session opened at `opened_at` (monotonic) ends, given the `expires_at` its
        session.created/updated announced (anything: it comes from the service)."""
        ends = opened_at + self.max_session_s
        if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
            return SessionEnd(ends)
        try:
            expires = float(expires_at)
        except OverflowError:  # an int beyond any float: no time at all
            expires = math.inf if expires_at > 0 else -math.inf
        announced = now + (expires - wall_now)
        if math.isfinite(announced) and announced - opened_at >= MIN_SESSION_S:
            return SessionEnd(min(ends, announced))
        ignored = round(expires - wall_now, 1) if math.isfinite(expires) else str(expires)
        return SessionEnd(ends, ignored)

    def rollover_times(self, opened_at: float, ends_at: float) -> tuple[float, float]:
        """When to open the next session and when to switch at the latest."""
        return rollover_times(opened_at, ends_at, self.margin_s)


def rollover_times(opened_at: float, ends_at: float, margin_s: float) -> tuple[float, float]:
    """When to open the next session and when to switch at the latest.

    The margin is capped at half the session's life: a service that announces sessions
    shorter than the margin must not make every new session roll over at once.
    """
    margin = min(margin_s, max(ends_at - opened_at, 0.0) / 2)
    return ends_at - margin, ends_at - margin / 4


def reconnect_failure(exc: TimeoutError | RealtimeConnectError | ConnectionClosed) -> str:
    """Why no new session took over after a drop, for the log."""
    if isinstance(exc, RealtimeConnectError):
        why = exc.reason
    elif isinstance(exc, TimeoutError):
        why = "timed out"
    else:
        why = f"the new session closed ({exc})"
    return f"no new session within {RECONNECT_WITHIN_S:g} s: {why}"
