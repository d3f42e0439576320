"""Who may cost us work: `sip.allow_from`, checked on the packet's source before anything else.

A source outside the list gets one 403, sent once and never retransmitted, or nothing at all
(`sip.reject_unknown: drop`): no parsing of its SDP, no 100 Trying, no transaction, no call
record, no file. Scanners find every public SIP port within hours; what they send must cost
less than it would to answer, and must not fill the log either (`LogLimiter`).
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Literal

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
RejectUnknown = Literal["respond", "drop"]
MAX_REMEMBERED = 4096  # sources whose verdict (or last log line) is remembered


class Door:
    """The source ACL, with the verdict of recent sources cached (a flood repeats one source)."""

    def __init__(self, allow: Iterable[IpNetwork], reject_unknown: RejectUnknown = "respond"):
        self._allow = list(allow)
        self.respond = reject_unknown == "respond"
        self._verdicts: OrderedDict[str, bool] = OrderedDict()

    def admits(self, host: str) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self._check(host)
            self._verdicts[host] = verdict
            if len(self._verdicts) > MAX_REMEMBERED:
                self._verdicts.popitem(last=False)
        return verdict

    def _check(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        return any(addr in net for net in self._allow)


class LogLimiter:
    """At most one log line per key (an event and a source) per interval; bounded memory."""

    def __init__(
        self,
        interval_s: float = 60.0,
        *,
        max_keys: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval_s
        self._max = max_keys
        self._clock = clock
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.suppressed = 0  # lines not written since the last one that was

    def allow(self, event: str, source: str) -> bool:
        now = self._clock()
        key = (event, source)
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self.suppressed += 1
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self._max:
            self._last.popitem(last=False)
        return True
