"""The toll-fraud guard as a table: patterns match whole numbers, and the concurrency and
per-minute bounds count as calls start and end (time passed in)."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.outbound_guard import OutboundGuard


def guard(**outbound: object) -> OutboundGuard:
    cfg = parse_config(
        {
            "sip": {
                "outbound": {
                    "trunk": "127.0.0.1:5070",
                    "caller_ids": [r"\+4930\d{4}"],
                    "destinations": [r"\+49(15|16|17)\d{7,9}", "1[0-9]{2}"],
                    **outbound,
                }
            }
        }
    )
    assert cfg.sip.outbound is not None
    return OutboundGuard(cfg.sip.outbound)


@pytest.mark.parametrize(
    ("to", "caller", "reason"),
    [
        ("+4917612345678", "+49301234", None),
        ("112", "+49301234", None),
        ("+4919012345678", "+49301234", "destination_not_allowed"),
        ("+4917612345678999", "+49301234", "destination_not_allowed"),  # fullmatch, not search
        ("00+4917612345678", "+49301234", "bad_destination"),
        ("1123", "+49301234", "destination_not_allowed"),
        ("+4917612345678", "+493012345", "caller_id_not_allowed"),
        ("+4917612345678", "+4930123", "caller_id_not_allowed"),
        ("+49176 1234", "+49301234", "bad_destination"),
        ("+49176<sip:x>", "+49301234", "bad_destination"),
        ("+4917612345678", "x@y", "bad_caller_id"),
    ],
)
def test_only_whole_matches_pass(to: str, caller: str, reason: str | None) -> None:
    refused = guard().check(to, caller, 0.0)
    assert (refused.reason if refused else None) == reason


def test_concurrency_counts_calls_until_they_end() -> None:
    g = guard(max_concurrent=2, max_per_minute=100)
    for now in (0.0, 1.0):
        assert g.check("112", "+49301234", now) is None
        g.started(now)
    refused = g.check("112", "+49301234", 2.0)
    assert refused is not None and (refused.status, refused.reason) == (429, "max_concurrent")
    g.ended()
    assert g.check("112", "+49301234", 3.0) is None


def test_the_minute_window_slides() -> None:
    g = guard(max_concurrent=100, max_per_minute=3)
    for now in (0.0, 10.0, 20.0):
        g.started(now)
        g.ended()
    refused = g.check("112", "+49301234", 59.0)
    assert refused is not None and refused.reason == "max_per_minute"
    assert g.retry_after(59.0) == 2
    assert g.check("112", "+49301234", 60.5) is None  # the call at 0 s has left the window


def test_the_config_refuses_empty_or_broken_patterns() -> None:
    from gateway.config import ConfigError

    for bad in ({"destinations": []}, {"caller_ids": ["("]}):
        with pytest.raises((ConfigError, ValueError)):
            guard(**bad)
