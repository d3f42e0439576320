"""The source ACL (`sip.allow_from`, door.py) as plain objects: every network in the list
counts, not only the first; IPv4 peers reported by a dual-stack socket as ::ffff:a.b.c.d are
checked as IPv4; a cached verdict is the verdict."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.sip.door import Door

NETWORKS = ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"]


def door() -> Door:
    return Door([ipaddress.ip_network(n) for n in NETWORKS])


@pytest.mark.parametrize(
    "host", ["10.1.2.3", "192.0.2.200", "2001:db8::5", "198.51.100.7", "::ffff:192.0.2.9"]
)
def test_a_source_in_any_listed_network_is_admitted(host: str) -> None:
    """One network per position of the list: a check of the first alone admits only 10/8."""
    d = door()
    assert d.admits(host), f"{host} is in {NETWORKS} but was refused"
    assert d.admits(host), "the cached verdict differs from the first one"


@pytest.mark.parametrize(
    "host", ["11.0.0.1", "192.0.3.1", "2001:db9::1", "198.51.100.8", "::ffff:8.8.8.8", "nonsense"]
)
def test_a_source_in_no_listed_network_is_refused(host: str) -> None:
    d = door()
    assert not d.admits(host), f"{host} is in none of {NETWORKS} but was admitted"
    assert not d.admits(host), "the cached verdict differs from the first one"


def test_an_empty_list_admits_nobody() -> None:
    assert not Door([]).admits("127.0.0.1")
