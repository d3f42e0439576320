"""Sources that keep failing digest authentication are shut out for a while (fail2ban-like).

A password guesser answers each challenge as fast as it gets one. Counting failed attempts
per source address, and refusing every INVITE from a source (403, no challenge) for
`block_s` once it has failed `max_failures` times within `window_s`, turns a dictionary
attack into a handful of guesses per block.

What counts as a failure is the verifier's call (digest.py): only credentials built on a
nonce this gateway issued to that very address, so a forger who spoofs a PBX's address
cannot get the PBX blocked without receiving its challenges.

A plain object with an injected clock (tested without sleeps). Memory is bounded: at most
`max_sources` addresses are tracked, the one that failed least recently is forgotten first,
and a source whose failures have all left the window is forgotten as soon as it is seen.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SOURCES = 10_000


@dataclass(slots=True)
class _Source:
    failures: deque[float] = field(default_factory=deque)  # times, oldest first
    blocked_until: float = 0.0


class AuthBlocklist:
    """``max_failures`` 0 turns blocking off (nothing is tracked)."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        block_s: float,
        *,
        max_sources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self._max_sources = max_sources
        self._clock = clock
        self._sources: OrderedDict[str, _Source] = OrderedDict()  # least recent failure first

    def __len__(self) -> int:
        return len(self._sources)

    def blocked(self, source: str) -> bool:
        """Whether INVITEs from ``source`` are refused now."""
        record = self._sources.get(source)
        if record is None or not record.blocked_until:
            return False
        if record.blocked_until > self._clock():
            return True
        del self._sources[source]  # served its time: starts again with a clean slate
        return False

    def failed(self, source: str) -> bool:
        """Count a failed attempt from ``source``; True when it starts a block."""
        if not self.max_failures:
            return False
        now = self._clock()
        self._forget_idle(now)
        record = self._sources.pop(source, None) or _Source()
        self._sources[source] = record  # most recent at the end
        while len(self._sources) > self._max_sources:
            self._sources.popitem(last=False)
        if record.blocked_until > now:
            return False
        failures = record.failures
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        failures.append(now)
        if len(failures) < self.max_failures:
            return False
        failures.clear()
        record.blocked_until = now + self.block_s
        return True

    def blocked_sources(self) -> int:
        """How many sources are blocked now (for a gauge: reads every record)."""
        now = self._clock()
        return sum(1 for r in self._sources.values() if r.blocked_until > now)

    def _forget_idle(self, now: float) -> None:
        """Drop, from the least recent end, sources neither blocked nor with a failure in the
        window: nothing about them would change a decision any more."""
        while self._sources:
            record = next(iter(self._sources.values()))
            if record.blocked_until > now:
                return
            if record.failures and record.failures[-1] > now - self.window_s:
                return
            self._sources.popitem(last=False)
