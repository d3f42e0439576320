"""Which outbound calls may be placed now (sans-I/O): the toll-fraud guard.

A control API token that leaks, or a model talked into calling premium numbers, must not
turn the trunk into a money pump: every destination and caller ID must fully match a
configured pattern, and the calls in progress and started per minute are bounded. Time is
passed in; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from .config import SipOutboundConfig
from .config.outbound import allowed

WINDOW_S = 60.0
# What a number may look like before any pattern is tried: the user part of a SIP URI that
# needs no escaping, so nothing a request says can reach a header unquoted.
NUMBER = re.compile(r"\+?[0-9A-Za-z*#._-]{1,64}")


@dataclass(frozen=True, slots=True)
class Refused:
    """A call the guard refuses: the HTTP status, a reason word (logs, metrics), the detail."""

    status: int
    reason: str
    detail: str


class OutboundGuard:
    """Counts outbound calls in progress and started within the last minute."""

    def __init__(self, cfg: SipOutboundConfig) -> None:
        self.cfg = cfg
        self.active = 0
        self._started: deque[float] = deque()

    def check(self, to: str, caller_id: str, now: float) -> Refused | None:
        """Why this call may not be placed now (None: it may)."""
        cfg = self.cfg
        if not NUMBER.fullmatch(to):
            return Refused(400, "bad_destination", "to: a number (+, digits, letters, * # . _ -)")
        if not NUMBER.fullmatch(caller_id):
            return Refused(400, "bad_caller_id", "from: a number (+, digits, letters, * # . _ -)")
        if not allowed(cfg.destinations, to):
            return Refused(
                403, "destination_not_allowed", "to: not allowed by sip.outbound.destinations"
            )
        if not allowed(cfg.caller_ids, caller_id):
            return Refused(
                403, "caller_id_not_allowed", "from: not allowed by sip.outbound.caller_ids"
            )
        if self.active >= cfg.max_concurrent:
            return Refused(
                429,
                "max_concurrent",
                f"sip.outbound.max_concurrent ({cfg.max_concurrent}) calls are in progress",
            )
        self._forget_before(now - WINDOW_S)
        if len(self._started) >= cfg.max_per_minute:
            return Refused(
                429,
                "max_per_minute",
                f"sip.outbound.max_per_minute ({cfg.max_per_minute}) calls started this minute",
            )
        return None

    def retry_after(self, now: float) -> int:
        """Seconds until the per-minute window has room again (at least 1)."""
        self._forget_before(now - WINDOW_S)
        if len(self._started) < self.cfg.max_per_minute or not self._started:
            return 1
        return max(1, int(self._started[0] + WINDOW_S - now) + 1)

    def carry(self, old: OutboundGuard) -> None:
        """Take over the counts of the guard this one replaces (a reload)."""
        self.active, self._started = old.active, old._started

    def started(self, now: float) -> None:
        self.active += 1
        self._started.append(now)

    def ended(self) -> None:
        self.active = max(0, self.active - 1)

    def _forget_before(self, cutoff: float) -> None:
        while self._started and self._started[0] <= cutoff:
            self._started.popleft()
