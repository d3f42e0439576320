"""The source ACL (`sip.allow_from`) and the log limiter, as plain objects.

Every network in the list counts (not only the first), a verdict is cached per source but
the cache stays bounded, and a dual-stack socket's ``::ffff:a.b.c.d`` is judged as IPv4.
"""

from __future__ import annotations

import ipaddress

from gateway.sip import door as door_module
from gateway.sip.door import MAX_REMEMBERED, Door, LogLimiter

NETS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32")]


def test_every_allow_from_network_admits_not_only_the_first() -> None:
    door = Door(NETS)
    assert door.admits("10.1.2.3")
    assert door.admits("192.0.2.77")
    assert door.admits("2001:db8::5")
    assert not door.admits("198.51.100.1")
    assert not door.admits("2001:db9::1")


def test_an_empty_list_admits_nobody() -> None:
    assert not Door([]).admits("127.0.0.1")


def test_a_name_or_junk_is_refused_not_resolved() -> None:
    door = Door([ipaddress.ip_network("0.0.0.0/0")])
    assert not door.admits("localhost")
    assert not door.admits("")
    assert not door.admits("10.0.0.1.evil")


def test_an_ipv4_mapped_source_is_judged_as_ipv4() -> None:
    door = Door([ipaddress.ip_network("192.0.2.0/24")])
    assert door.admits("::ffff:192.0.2.9")
    assert not door.admits("::ffff:198.51.100.9")


def test_a_scoped_ipv6_source_is_judged_without_its_zone() -> None:
    door = Door([ipaddress.ip_network("fe80::/10")])
    assert door.admits("fe80::1%eth0")
    assert not Door(NETS).admits("fe80::1%eth0")


def test_reject_unknown_decides_whether_to_answer() -> None:
    assert Door(NETS).respond is True
    assert Door(NETS, "respond").respond is True
    assert Door(NETS, "drop").respond is False


def test_the_verdict_cache_is_bounded_and_forgets_the_oldest(monkeypatch) -> None:
    monkeypatch.setattr(door_module, "MAX_REMEMBERED", 3)
    door = Door(NETS)
    for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert door.admits(host)
    assert len(door._verdicts) == 3
    assert not door.admits("198.51.100.1")  # a fourth source: the oldest verdict goes
    assert len(door._verdicts) == 3
    assert "10.0.0.1" not in door._verdicts
    assert list(door._verdicts) == ["10.0.0.2", "10.0.0.3", "198.51.100.1"]
    assert door._verdicts["198.51.100.1"] is False


def test_a_cached_verdict_is_reused() -> None:
    door = Door(NETS)
    assert door.admits("10.0.0.1")
    door._allow.clear()  # the cache answers, not the list
    assert door.admits("10.0.0.1")
    assert MAX_REMEMBERED == 4096


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_log_limiter_allows_one_line_per_key_per_interval() -> None:
    clock = Clock()
    limiter = LogLimiter(10.0, clock=clock)
    assert limiter.allow("sip.refused", "192.0.2.1")
    assert not limiter.allow("sip.refused", "192.0.2.1")
    assert limiter.suppressed == 1
    assert limiter.allow("sip.refused", "192.0.2.2")  # another source
    assert limiter.allow("sip.junk", "192.0.2.1")  # another event
    clock.now += 9.999
    assert not limiter.allow("sip.refused", "192.0.2.1")
    assert limiter.suppressed == 2
    clock.now += 0.001  # exactly one interval after the first line
    assert limiter.allow("sip.refused", "192.0.2.1")
    assert limiter.suppressed == 2


def test_log_limiter_default_interval_is_a_minute() -> None:
    clock = Clock()
    limiter = LogLimiter(clock=clock)
    assert limiter.allow("e", "s")
    clock.now += 59.9
    assert not limiter.allow("e", "s")
    clock.now += 0.1
    assert limiter.allow("e", "s")


def test_log_limiter_memory_is_bounded_and_forgets_the_least_recent() -> None:
    clock = Clock()
    limiter = LogLimiter(10.0, max_keys=2, clock=clock)
    assert limiter.allow("e", "a")
    clock.now += 1
    assert limiter.allow("e", "b")
    clock.now += 20
    assert limiter.allow("e", "a")  # a is the most recent again
    clock.now += 1
    assert limiter.allow("e", "c")  # b, the least recent, is forgotten
    assert list(limiter._last) == [("e", "a"), ("e", "c")]
    assert limiter.allow("e", "b")  # forgotten: allowed again at once
    assert len(limiter._last) == 2
    assert LogLimiter(clock=clock)._max == MAX_REMEMBERED
