"""Metrics: the probe's latency measures, the feeds from call stats and usage, and the HTTP
endpoint on a real loopback socket."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.media.stream import RtpStats
from gateway.metrics import (
    END_REASONS,
    REALTIME_ERROR_CODES,
    REJECT_REASONS,
    CallProbe,
    Metrics,
    MetricsServer,
    _label,
)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_downlink_latency_is_measured_once_per_answer_start() -> None:
    metrics = Metrics()
    probe = CallProbe(metrics)
    probe.audio_arrived(playback_idle=True)
    assert value(metrics, "sipgw_downlink_latency_seconds_count") == 0
    probe.audio_arrived(playback_idle=False)  # more of the same answer: no new measure
    probe.audio_played()  # its first frame goes out
    probe.audio_played()
    assert value(metrics, "sipgw_downlink_latency_seconds_count") == 1
    assert 0 < value(metrics, "sipgw_downlink_latency_seconds_sum") < 1


def test_a_flush_cancels_the_pending_downlink_measure_and_counts_a_barge_in() -> None:
    metrics = Metrics()
    probe = CallProbe(metrics)
    probe.audio_arrived(playback_idle=True)
    probe.flushed(0.0, cut_audio=False)  # speech_started with nothing playing
    probe.audio_played()
    assert value(metrics, "sipgw_downlink_latency_seconds_count") == 0
    assert value(metrics, "sipgw_barge_in_cutoff_seconds_count") == 0
    import time

    probe.flushed(time.monotonic(), cut_audio=True)
    assert value(metrics, "sipgw_barge_in_cutoff_seconds_count") == 1


def test_uplink_latency_from_the_oldest_packet_not_yet_sent() -> None:
    import time

    metrics = Metrics()
    probe = CallProbe(metrics)
    now = time.monotonic()
    # Three packets, the resampler gives audio only with the third: measured from the first.
    probe.uplink_taken(now - 0.045)
    probe.uplink_taken(now - 0.025)
    probe.uplink_taken(now - 0.005)
    probe.uplink_sent()
    assert value(metrics, "sipgw_uplink_latency_seconds_count") == 1
    assert value(metrics, "sipgw_uplink_latency_seconds_bucket", le="0.04") == 0
    assert value(metrics, "sipgw_uplink_latency_seconds_bucket", le="0.08") == 1
    probe.uplink_taken(time.monotonic())
    probe.uplink_sent()
    assert value(metrics, "sipgw_uplink_latency_seconds_bucket", le="0.04") == 1


def test_latency_histogram_is_exposed_as_a_prometheus_histogram() -> None:
    metrics = Metrics()
    for seconds in (0.0005, 0.0006, 0.03, 5.0):  # on a bound, between two, past the last
        metrics.uplink_latency.observe(seconds)
    text = generate_latest(metrics.registry).decode()
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "sipgw_uplink_latency_seconds"
    )
    assert family.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets["0.0005"] == 1 and buckets["0.001"] == 2 and buckets["0.02"] == 2
    assert buckets["0.04"] == 3 and buckets["0.32"] == 3 and buckets["+Inf"] == 4
    assert value(metrics, "sipgw_uplink_latency_seconds_count") == 4
    assert value(metrics, "sipgw_uplink_latency_seconds_sum") == pytest.approx(5.0311)


def test_rtp_stats_are_counted_by_kind_and_missing_fields_are_skipped() -> None:
    @dataclass
    class Extended(RtpStats):
        lost: int = 3
        out_of_order: int = 2

    metrics = Metrics()
    metrics.rtp(RtpStats(packets_in=100, packets_out=150, malformed=1))
    metrics.rtp(Extended(packets_in=10))
    assert value(metrics, "sipgw_rtp_packets_total", kind="received") == 110
    assert value(metrics, "sipgw_rtp_packets_total", kind="sent") == 150
    assert value(metrics, "sipgw_rtp_packets_total", kind="malformed") == 1
    assert value(metrics, "sipgw_rtp_packets_total", kind="lost") == 3
    assert value(metrics, "sipgw_rtp_packets_total", kind="out_of_order") == 2


def test_token_usage_by_kind() -> None:
    metrics = Metrics()
    usage = {
        "total_tokens": 160,
        "input_tokens": 100,
        "output_tokens": 60,
        "input_token_details": {"text_tokens": 20, "audio_tokens": 80, "cached_tokens": 64},
        "output_token_details": {"text_tokens": 10, "audio_tokens": 50},
    }
    CallProbe(metrics).response_done(usage)
    CallProbe(metrics).response_done({})  # a cancelled response may carry no usage
    assert value(metrics, "sipgw_realtime_tokens_total", kind="input_audio") == 80
    assert value(metrics, "sipgw_realtime_tokens_total", kind="input_cached") == 64
    assert value(metrics, "sipgw_realtime_tokens_total", kind="output_audio") == 50
    assert value(metrics, "sipgw_realtime_tokens_total", kind="output_text") == 10


def test_labels_are_short_tokens_whatever_the_service_sends() -> None:
    assert _label("rate_limit_exceeded") == "rate_limit_exceeded"
    assert _label("Invalid Value: 'x'!") == "invalid_value_x"
    assert len(_label("x" * 500)) == 40
    assert _label("") == "unknown"
    metrics = Metrics()
    metrics.ended("realtime_closed:1001", 12.0)
    metrics.ended("internal_error:uplink", 3.0)
    assert value(metrics, "sipgw_calls_ended_total", reason="realtime_closed") == 1
    assert value(metrics, "sipgw_calls_ended_total", reason="internal_error") == 1
    assert value(metrics, "sipgw_call_duration_seconds_count") == 2


def label_sets(metrics: Metrics, family: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for metric in metrics.registry.collect()
        if metric.name == family
        for sample in metric.samples
        if sample.name.endswith("_total")
    ]


def test_codes_from_outside_count_as_other_so_label_sets_stay_bounded() -> None:
    """1000 distinct error codes, close codes and HTTP statuses from a hostile service, and
    1000 end reasons nobody planned for: a few label sets, not thousands."""
    metrics = Metrics()
    probe = CallProbe(metrics)
    for i in range(1000):
        probe.realtime_error(f"made_up_code_{i}")
        metrics.realtime_error(f"close_{4000 + i}")
        metrics.realtime_error(f"http_{100 + i % 500}")
        metrics.ended(f"weird_reason_{i}:x", 1.0)
        metrics.rejected(f"refusal_{i}")
        metrics.unanswered(f"outcome_{i}", f"reason_{i}")
    errors = label_sets(metrics, "sipgw_realtime_errors")
    http_known = sum(s.startswith("http_") for s in REALTIME_ERROR_CODES)
    assert len(errors) <= 1 + http_known
    assert value(metrics, "sipgw_realtime_errors_total", code="other") >= 2000
    assert label_sets(metrics, "sipgw_calls_ended") == [{"reason": "other"}]
    assert len(label_sets(metrics, "sipgw_calls")) == 2  # (rejected, other), (other, other)
    assert value(metrics, "sipgw_calls_total", outcome="rejected", reason="other") == 1000
    # Known values keep their own label.
    probe.realtime_error("conversation_already_has_active_response")
    metrics.realtime_error("close_1011")
    metrics.ended("rtp_timeout", 1.0)
    metrics.unanswered("cancelled", "caller_cancel")
    assert value(metrics, "sipgw_realtime_errors_total", code="close_1011") == 1
    assert value(metrics, "sipgw_calls_ended_total", reason="rtp_timeout") == 1
    assert value(metrics, "sipgw_calls_total", outcome="cancelled", reason="caller_cancel") == 1


def test_every_end_reason_the_gateway_gives_is_in_the_vocabulary() -> None:
    from gateway.app import END_OF_SERVICE
    from gateway.bridge.call_limits import HOLD_TIMEOUT, MAX_CALL_DURATION
    from gateway.refusals import REFUSALS, SETUP_REJECTIONS
    from gateway.sip.session_timer import SESSION_TIMER_EXPIRED

    assert {*SETUP_REJECTIONS, *END_OF_SERVICE, HOLD_TIMEOUT, MAX_CALL_DURATION} <= END_REASONS
    assert SESSION_TIMER_EXPIRED in END_REASONS
    assert {*SETUP_REJECTIONS, *REFUSALS} <= REJECT_REASONS


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_http_endpoint_serves_metrics_health_and_readiness() -> None:
    metrics = Metrics()
    metrics.answered()
    ready = [False]
    server = MetricsServer(metrics, "127.0.0.1", _free_tcp_port(), lambda: ready[0])
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                families = {f.name: f for f in text_string_to_metric_families(await r.text())}
            assert families["sipgw_calls"].samples[0].value == 1
            assert {"sipgw_active_calls", "sipgw_uplink_latency_seconds"} <= set(families)
            openmetrics = {"Accept": "application/openmetrics-text; version=1.0.0"}
            async with http.get(f"{base}/metrics", headers=openmetrics) as r:
                assert r.headers["Content-Type"].startswith("application/openmetrics-text")
                assert (await r.text()).endswith("# EOF\n")
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503
            ready[0] = True
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200
            async with http.get(f"{base}/nothing") as r:
                assert r.status == 404
    finally:
        await server.close()


@pytest.mark.parametrize("enabled", [False, True])
async def test_debug_state_is_served_only_when_configured(enabled: bool) -> None:
    """metrics.debug_state (default false): /debug/state is 404 unless it is turned on, and
    what the process holds is never computed for a request then."""
    asked: list[bool] = []

    def state(collect: bool) -> dict[str, int]:
        asked.append(collect)
        return {"calls": 0}

    server = MetricsServer(
        Metrics(), "127.0.0.1", _free_tcp_port(), lambda: True, state, debug_state=enabled
    )
    await server.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(f"http://127.0.0.1:{server.port}/debug/state?gc=1") as r:
                assert r.status == (200 if enabled else 404)
                if enabled:
                    assert await r.json() == {"calls": 0}
    finally:
        await server.close()
    assert asked == ([True] if enabled else [])


def test_debug_state_is_off_by_default_in_the_config() -> None:
    from gateway.config import parse_config

    assert parse_config({}).metrics.debug_state is False
    assert parse_config({"metrics": {"debug_state": True}}).metrics.debug_state is True
