"""Call setup's plain parts as tables: which failure gets which SIP answer, who is admitted,
how an ending is counted, what a reload applies. No sockets, no sleeps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.admission import Admission
from gateway.bridge.setup import count_end
from gateway.call_record import CallRecord, RecordWriter
from gateway.config import parse_config
from gateway.metrics import Metrics
from gateway.refusals import PHRASES, REFUSALS, SETUP_FAILURES, SETUP_REJECTIONS, SetupFailed
from gateway.reload import apply_config


@pytest.mark.parametrize(
    ("reason", "status", "phrase"),
    [
        ("not_acceptable", 488, "Not Acceptable Here"),
        ("no_rtp_port", 503, "Service Unavailable"),
        ("realtime_unavailable", 503, "Service Unavailable"),
    ],
)
def test_a_setup_failure_carries_its_sip_answer(reason: str, status: int, phrase: str) -> None:
    exc = SetupFailed(reason, "why", retry_after=7, http_status=429)
    assert (exc.status, exc.phrase, exc.retry_after) == (status, phrase, 7)
    assert exc.fields == {"http_status": 429} and str(exc) == "why"


def test_one_table_states_every_setup_failure() -> None:
    assert set(SETUP_REJECTIONS) == set(SETUP_FAILURES)
    assert set(SETUP_FAILURES.values()) <= set(PHRASES)
    assert not set(REFUSALS) & set(SETUP_FAILURES)
    with pytest.raises(KeyError):
        SetupFailed("no_such_failure", "a failure the table does not name")


def admission() -> tuple[Admission, Metrics]:
    metrics = Metrics()
    return Admission(metrics, RecordWriter(None, lambda: None)), metrics


@pytest.mark.parametrize(
    ("draining", "full", "expected"),
    [
        (False, False, None),
        (True, False, (503, "draining")),
        (False, True, (503, "max_calls")),
        (True, True, (503, "draining")),  # draining says more than full
    ],
)
def test_who_is_admitted_without_sip_auth(
    draining: bool, full: bool, expected: tuple[int, str] | None
) -> None:
    gate, _ = admission()
    refusal = gate.refusal(SimpleNamespace(), draining=draining, full=full)  # type: ignore[arg-type]
    got = None if refusal is None else (refusal.status, refusal.label)
    assert got == expected
    if refusal is not None:
        assert refusal.headers == {"Retry-After": "5"} and refusal.label in REFUSALS


def calls_total(metrics: Metrics, **labels: str) -> float:
    return metrics.registry.get_sample_value("sipgw_calls_total", labels) or 0.0


def ended_total(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("sipgw_calls_ended_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize(
    ("reason", "answered", "counted"),
    [
        ("caller_bye", True, ("ended", "caller_bye")),
        ("not_acceptable", False, ("rejected", "not_acceptable")),
        ("no_rtp_port", False, ("rejected", "no_rtp_port")),
        ("realtime_unavailable", False, ("rejected", "realtime_unavailable")),
        ("caller_cancel", False, ("cancelled", "caller_cancel")),
        ("shutdown", False, ("cancelled", "shutdown")),
        ("drain_timeout", False, ("cancelled", "drain_timeout")),
        ("ack_timeout", False, ("failed", "ack_timeout")),
        ("internal_error", False, ("failed", "internal_error")),
        ("failover_redirect", False, ("redirected", "failover_redirect")),
        ("failover_transferred", True, ("ended", "failover_transferred")),
        ("api_hangup", True, ("ended", "api_hangup")),
    ],
)
def test_how_an_ending_is_counted(reason: str, answered: bool, counted: tuple[str, str]) -> None:
    metrics = Metrics()
    count_end(metrics, reason, answered, 1.5, None)
    outcome, label = counted
    if outcome == "ended":
        assert ended_total(metrics, label) == 1
    else:
        assert calls_total(metrics, outcome=outcome, reason=label) == 1


def test_a_service_close_other_than_normal_counts_as_a_realtime_error() -> None:
    metrics = Metrics()
    count_end(metrics, "realtime_closed:1011", True, 3.0, None)
    count_end(metrics, "realtime_closed:1000", True, 3.0, None)
    errors = metrics.registry.get_sample_value
    assert errors("sipgw_realtime_errors_total", {"code": "close_1011"}) == 1
    assert errors("sipgw_realtime_errors_total", {"code": "close_1000"}) is None


@pytest.mark.parametrize(
    ("change", "applied", "needs_restart"),
    [
        ({}, [], []),
        ({"agent": {"instructions": "Be brief."}}, ["agent"], []),
        ({"routes": [{"match": {"dialed": "100"}, "profile": "p"}]}, ["routes"], []),
        ({"media": {"rtp_port_max": 30000}}, [], ["media"]),
        ({"sip": {"max_calls": 7}}, [], ["sip"]),
    ],
)
def test_what_a_reload_applies(
    change: dict[str, Any], applied: list[str], needs_restart: list[str]
) -> None:
    base: dict[str, Any] = {"profiles": {"p": {"instructions": "Sales."}}}
    old = parse_config(base)
    new = parse_config({**base, **change})
    cfg, got_applied, got_restart = apply_config(old, new, None, "not listening on TLS")
    assert (got_applied, got_restart) == (applied, needs_restart)
    for name in applied:
        assert getattr(cfg, name) == getattr(new, name)
    for name in needs_restart:
        assert getattr(cfg, name) == getattr(old, name)  # kept until a restart


def test_the_record_of_an_invite_is_built_in_one_place() -> None:
    sip = SimpleNamespace(
        call_id="abc@pbx", caller="alice", callee="bot", source_addr=("192.0.2.1", 5060)
    )
    record = CallRecord.of_invite("c1", sip, "100", end_reason="max_calls", sip_status=503)  # type: ignore[arg-type]
    assert (record.call_id, record.sip_call_id, record.caller, record.callee) == (
        "c1", "abc@pbx", "alice", "bot",
    )  # fmt: skip
    assert (record.source, record.dialed, record.sip_status) == ("192.0.2.1:5060", "100", 503)


async def test_a_record_that_cannot_be_written_is_counted_not_raised(tmp_path: Path) -> None:
    failures: list[int] = []
    missing = tmp_path / "gone"
    writer = RecordWriter(missing, lambda: failures.append(1))
    record = CallRecord("c2", "x@pbx", "a", "b", "192.0.2.1:5060")
    await writer.final(record, "caller_bye", None, SimpleNamespace(error=lambda *a, **k: None))
    assert failures == [1] and record.state == "completed" and record.end_reason == "caller_bye"
    assert RecordWriter(None, lambda: None).opening(record, None) is None  # no calls_dir
