"""Prometheus metrics, and the HTTP endpoint that serves them with /healthz and /readyz.

The endpoint is an aiohttp server on the gateway's own event loop: no thread, nothing to lock,
and a scrape reads the live registry between two media ticks (rendering it takes about 0.6
ms, measured). prometheus-client's own `start_http_server` would run a second, threaded HTTP
server beside the loop for no gain; aiohttp is already installed (azure-identity's transport).

Labels are a small fixed vocabulary (outcome, reason, kind, code), never a caller, a URL or a
key: a label value is cut to a short token by `_label`, and where a value comes from outside
(the Realtime service's error codes and close codes, an HTTP status) or from many places (end
reasons) it must be one of a known set (`_known`); any other value counts as `other`, so no
peer can make a label set grow without end.

Latency is measured with `time.monotonic()` stamps at the two edges of the gateway:

* uplink: the arrival of the oldest RTP packet whose audio an `input_audio_buffer.append`
  carries -> that WebSocket send has returned (decode, the resampler holding
  audio back until it has a block, JSON, the socket write; not the filter's group delay, which
  is in the audio itself), one observation per send;
* downlink: an audio delta's arrival while the playback buffer is idle (the start of an answer,
  or after an underrun) -> the pacer takes the first frame holding it, just before sending it
  as RTP. Deltas queued behind audio still playing wait for the caller's ear, not for the
  gateway, so they are not counted;
* barge-in cutoff: the gateway has the `input_audio_buffer.speech_started` event -> playback is
  flushed (from then on the pacer sends silence; one frame may already be on the wire).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .config import hooks as config_hooks

PREFIX = "sipgw"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
# Fields of RtpStream.stats counted at call end, by label; absent ones are skipped, so the
# media engine can add counters (lost, late, out_of_order) without a change here.
RTP_KINDS = {
    "received": "packets_in",
    "sent": "packets_out",
    "lost": "lost",
    "late": "late",
    "out_of_order": "out_of_order",
    "duplicate": "duplicates",
    "malformed": "malformed",
    "foreign_source": "foreign_source",
    "other_payload": "other_payload",
    "flood_dropped": "flood_dropped",
    "send_failed": "send_errors",
    "srtp_auth_failed": "srtp_auth_failures",
    "srtp_replayed": "srtp_replayed",
}
_TOKEN_KINDS = (
    ("input", "text_tokens", "input_text"),
    ("input", "audio_tokens", "input_audio"),
    ("input", "cached_tokens", "input_cached"),
    ("output", "text_tokens", "output_text"),
    ("output", "audio_tokens", "output_audio"),
)
OTHER = "other"  # the label of a value outside its vocabulary
REJECT_REASONS = frozenset(
    {"forbidden", "unauthorized", "auth_blocked", "max_calls", "draining"}  # app.REFUSALS
    | {"not_acceptable", "no_rtp_port", "realtime_unavailable"}  # app.SETUP_REJECTIONS
    | {"hook_rejected", "hook_redirected", "hook_failed"}  # hooks.decide.DECLINED_REASONS
)
HOOK_OUTCOMES = frozenset(
    {"accept", "reject", "redirect", "timeout", "unreachable", "http_error", "bad_answer"}
    | {"cancelled"}
)  # hooks.decide.OUTCOMES
END_REASONS = frozenset(
    {"caller_bye", "caller_cancel", "ack_timeout", "bad_sdp_answer", "shutdown"}
    | {"drain_timeout", "agent_hangup", "transferred", "rtp_timeout", "max_call_duration"}
    | {"hold_timeout", "realtime_closed", "internal_error", "cancelled", "failure"}
    | {f"{task}_ended" for task in ("uplink", "downlink", "pacer", "hang_up", "rtp_timeout")}
    | {"time_limits_ended", "session_timer_expired"}
    | {"api_hangup", "failover_redirect", "failover_transferred", "silence_timeout"}
    | REJECT_REASONS
)
REALTIME_ERROR_CODES = frozenset(
    # the gateway's own
    {"malformed_event", "no_code", "connect_failed"}
    # error.code values of the service (REALTIME_PROTOCOL.md section 6, the embedded agent)
    | {"conversation_already_has_active_response", "response_cancel_not_active"}
    | {"session_expired", "input_audio_buffer_commit_empty", "invalid_request_error"}
    | {"invalid_value", "invalid_type", "invalid_json", "unknown_parameter", "item_not_found"}
    | {"missing_required_parameter", "unsupported_format", "cannot_update_voice"}
    | {"cannot_update_model", "server_error", "rate_limit_exceeded"}
    # refused handshakes, and closes other than 1000 (RFC 6455 section 7.4.1)
    | {f"http_{status}" for status in (400, 401, 403, 404, 408, 409, 429)}
    | {f"http_{status}" for status in (500, 501, 502, 503, 504)}
    | {f"close_{code}" for code in range(1001, 1016)}
)


def _label(value: object, default: str = "unknown") -> str:
    """A bounded, safe label value: lower-case [a-z0-9_], at most 40 characters."""
    text = re.sub(r"[^a-z0-9_]+", "_", str(value).lower()).strip("_")[:40]
    return text or default


def _known(value: object, vocabulary: frozenset[str]) -> str:
    """The label of a value that must be one of `vocabulary`: `other` when it is not."""
    label = _label(value)
    return label if label in vocabulary else OTHER


class LatencyHistogram(Collector):
    """A histogram observed on the media path: the uplink's is observed for every append, 10,000
    times a second at 200 calls. A bisect and two additions, where prometheus-client's
    Histogram takes a lock and walks its buckets in Python (0.8 us, measured); the loop is the
    only writer, so no lock. Exposed as a standard histogram (``_bucket``, ``_count``, ``_sum``).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        if registry is not None:
            registry.register(self)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, self.sum)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)


class Metrics:
    """Every metric of one gateway process, in its own registry, defined by what it measures
    (calls, latency, media, Realtime, SIP, operations); names, labels and help are what
    dashboards read: change none of them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._calls(self.registry)
        self._latency(self.registry)
        self._media(self.registry)
        self._realtime(self.registry)
        self._sip(self.registry)
        self._api(self.registry)
        self._operations(self.registry)

    def _calls(self, r: CollectorRegistry) -> None:
        """Calls: how INVITEs ended up, how answered calls ended and how long they lasted."""
        p = PREFIX
        self.active_calls = Gauge(
            f"{p}_active_calls", "Calls in progress (being set up or answered).", registry=r
        )
        self.calls = Counter(
            f"{p}_calls",
            "INVITEs by outcome: answered; rejected (reason: forbidden, unauthorized, "
            "auth_blocked, max_calls, draining, not_acceptable, no_rtp_port, "
            "realtime_unavailable, hook_rejected, hook_redirected, hook_failed); cancelled; "
            "failed; redirected (failover_redirect).",
            ["outcome", "reason"],
            registry=r,
        )
        self.calls_ended = Counter(
            f"{p}_calls_ended",
            "Answered calls that ended, by reason (an unknown one counts as other).",
            ["reason"],
            registry=r,
        )
        self.call_duration = Histogram(
            f"{p}_call_duration_seconds",
            "Duration of answered calls, from 200 OK to hang-up.",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
            registry=r,
        )

    def _latency(self, r: CollectorRegistry) -> None:
        """The gateway's own latency at its two edges, and the pacer's promptness."""
        p = PREFIX
        self.uplink_latency = LatencyHistogram(
            f"{p}_uplink_latency_seconds",
            "Gateway-added latency caller->model: RTP arrival to WebSocket send of its audio.",
            registry=r,
        )
        self.downlink_latency = LatencyHistogram(
            f"{p}_downlink_latency_seconds",
            "Gateway-added latency model->caller: audio delta arrival (playback idle) to the "
            "first RTP packet of its audio.",
            registry=r,
        )
        self.pacer_lateness = LatencyHistogram(
            f"{p}_pacer_lateness_seconds",
            "How late the RTP pacer's ticks ran after their deadline (each sends for a tenth "
            "of the calls): the event loop's promptness for media. A p99 of several ms means "
            "the process is short of CPU: fewer calls per instance.",
            registry=r,
        )
        self.barge_in_cutoff = LatencyHistogram(
            f"{p}_barge_in_cutoff_seconds",
            "Barge-in: speech_started received to model playback stopped.",
            registry=r,
        )

    def _media(self, r: CollectorRegistry) -> None:
        """The media path: RTP packets of ended calls, model audio that found no room."""
        p = PREFIX
        self.rtp_packets = Counter(
            f"{p}_rtp_packets",
            "RTP packets of ended calls, by kind (received, sent, lost, late, out_of_order, "
            "duplicate, malformed, foreign_source, other_payload, flood_dropped, send_failed, "
            "srtp_auth_failed, srtp_replayed).",
            ["kind"],
            registry=r,
        )
        self.playback_dropped = Counter(
            f"{p}_playback_dropped_seconds",
            "Model audio dropped because a call's playback buffer was full "
            "(media.playback_buffer_s): an answer that arrived far ahead of real time.",
            registry=r,
        )

    def _realtime(self, r: CollectorRegistry) -> None:
        """The Realtime service: handshakes, errors, tokens."""
        p = PREFIX
        self.handshake = Histogram(
            f"{p}_realtime_handshake_seconds",
            "Opening a Realtime session: WebSocket handshake to session.updated.",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5),
            registry=r,
        )
        self.realtime_errors = Counter(
            f"{p}_realtime_errors",
            "Realtime API errors by code: error events, refused handshakes (http_NNN), "
            "timeouts, unreachable service, abnormal closes (close_NNNN); a code outside the "
            "known set counts as other.",
            ["code"],
            registry=r,
        )
        self.tokens = Counter(
            f"{p}_realtime_tokens",
            "Tokens reported by response.done, by kind (input_text, input_audio, "
            "input_cached, output_text, output_audio).",
            ["kind"],
            registry=r,
        )

    def _sip(self, r: CollectorRegistry) -> None:
        """SIP: what was dropped unprocessed, and the digest-auth blocklist."""
        p = PREFIX
        self.sip_dropped = Counter(
            f"{p}_sip_dropped",
            "SIP messages and connections not processed, by transport and reason: "
            "not_allowed (sip.allow_from), answer_too_large (a refusal larger than its request "
            "is not sent), unparseable, bad_address, bad_header, send_failed, "
            "tcp_connection_limit, tcp_source_limit, tcp_timeout, tcp_framing, tcp_send_buffer, "
            "tcp_no_connection; TLS: tls_handshake_failed (plaintext, no shared protocol), "
            "tls_handshake_timeout, tls_untrusted_peer (no certificate or not from "
            "sip.tls.ca_file), tls_name_not_allowed (sip.tls.allowed_names), "
            "tls_connect_failed (a connection the gateway opens: refused, unverified).",
            ["transport", "reason"],
            registry=r,
        )
        self.auth_blocks = Counter(
            f"{p}_auth_blocks",
            "Sources blocked for repeated digest authentication failures "
            "(sip.auth.max_failures within sip.auth.failure_window_s).",
            registry=r,
        )
        self.auth_blocked_sources = Gauge(
            f"{p}_auth_blocked_sources",
            "Source addresses whose INVITEs are refused now (403) after repeated digest "
            "authentication failures.",
            registry=r,
        )

    def _api(self, r: CollectorRegistry) -> None:
        """The control API's door (gateway/api/door.py)."""
        self.api_blocks = Counter(
            f"{PREFIX}_api_blocks",
            "Sources shut out of the control API and its console (429) for repeated refused "
            "requests (api.max_failures within api.failure_window_s).",
            registry=r,
        )

    def _operations(self, r: CollectorRegistry) -> None:
        """Running the process: call files that failed to be written, reloads."""
        p = PREFIX
        self.record_write_failures = Counter(
            f"{p}_record_write_failures",
            "Writes of a call's files that failed (full disk, I/O error), by kind "
            "(call_record, recording, transcript, timeline); each is also logged with its "
            "errno. The call goes on; what could not be written is lost.",
            ["kind"],
            registry=r,
        )
        self.config_reloads = Counter(
            f"{p}_config_reloads", "SIGHUP reloads by result (ok, rejected).", ["result"],
            registry=r,
        )  # fmt: skip
        # The decision webhook (hooks.call_incoming): one group of its own.
        self.hook_incoming = Counter(
            f"{p}_hook_incoming",
            "Decision webhook asks by outcome: accept, reject, redirect; timeout, "
            "unreachable, http_error, bad_answer (then hooks.call_incoming.on_failure "
            "applies); cancelled (the caller hung up while it was asked).",
            ["outcome"],
            registry=r,
        )
        self.hook_incoming_seconds = Histogram(
            f"{p}_hook_incoming_seconds",
            "Time to the decision webhook's answer (or its failure), added to call setup.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )

    # --- call outcomes (from the daemon) -------------------------------------------------------

    def rejected(self, reason: str) -> None:
        self.calls.labels("rejected", _known(reason, REJECT_REASONS)).inc()

    def answered(self) -> None:
        self.calls.labels("answered", "").inc()

    def unanswered(self, outcome: str, reason: str) -> None:
        outcome = _known(outcome, frozenset({"cancelled", "failed", "redirected"}))
        self.calls.labels(outcome, _known(reason.split(":", 1)[0], END_REASONS)).inc()

    def ended(self, reason: str, duration_s: float) -> None:
        self.calls_ended.labels(_known(reason.split(":", 1)[0], END_REASONS)).inc()
        self.call_duration.observe(duration_s)

    def hook_asked(self, outcome: str, seconds: float) -> None:
        """One ask of the decision webhook (outcome: one of hooks.decide.OUTCOMES)."""
        self.hook_incoming.labels(_known(outcome, HOOK_OUTCOMES)).inc()
        self.hook_incoming_seconds.observe(seconds)

    def sip_drop(self, transport: str, reason: str) -> None:
        self.sip_dropped.labels(_label(transport), _label(reason)).inc()

    def write_failed(self, kind: str) -> None:
        """A call's file could not be written (kind: call_record, recording, transcript,
        timeline)."""
        self.record_write_failures.labels(_label(kind)).inc()

    def realtime_error(self, code: object) -> None:
        self.realtime_errors.labels(_known(code, REALTIME_ERROR_CODES)).inc()

    def rtp(self, stats: object) -> None:
        for kind, attr in RTP_KINDS.items():
            value = getattr(stats, attr, None)
            if isinstance(value, int) and value > 0:
                self.rtp_packets.labels(kind).inc(value)

    def usage(self, usage: Mapping[str, Any]) -> None:
        for side, key, kind in _TOKEN_KINDS:
            details = usage.get(f"{side}_token_details")
            value = details.get(key) if isinstance(details, dict) else None
            if isinstance(value, int) and value > 0:
                self.tokens.labels(kind).inc(value)


class CallProbe:
    """The per-call hooks the bridge feeds; cheap: a monotonic stamp and one observe."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or _detached()
        self.downlink_since: float | None = None
        self._uplink_since: float | None = None
        self.uplink_ms = 0.0  # the last measures, for the console's view of the call
        self.downlink_ms = 0.0

    def uplink_taken(self, arrived: float) -> None:
        """The uplink took a packet that arrived at `arrived`; its audio may come out of the
        resampler only with a later packet's, so the oldest one not yet sent is remembered."""
        if self._uplink_since is None:
            self._uplink_since = arrived

    def uplink_sent(self) -> None:
        """Audio went to the model: it held every packet taken since the last send."""
        if self._uplink_since is not None:
            took = time.monotonic() - self._uplink_since
            self.metrics.uplink_latency.observe(took)
            self.uplink_ms = took * 1000
            self._uplink_since = None

    def audio_arrived(self, playback_idle: bool) -> None:
        """A model audio delta arrived; only one that finds playback idle starts a measure."""
        if playback_idle and self.downlink_since is None:
            self.downlink_since = time.monotonic()

    def audio_played(self) -> None:
        """The pacer took a frame of model audio: the end of a measure, if one is running
        (the bridge calls this only then: ``downlink_since is not None``)."""
        if self.downlink_since is not None:
            took = time.monotonic() - self.downlink_since
            self.metrics.downlink_latency.observe(took)
            self.downlink_ms = took * 1000
            self.downlink_since = None

    def flushed(self, since: float, *, cut_audio: bool) -> None:
        """Playback was flushed for a speech_started the gateway got at `since`; a barge-in
        when model audio was cut."""
        self.downlink_since = None
        if cut_audio:
            self.metrics.barge_in_cutoff.observe(time.monotonic() - since)

    def response_done(self, usage: Mapping[str, Any]) -> None:
        self.metrics.usage(usage)

    def realtime_error(self, code: object) -> None:
        self.metrics.realtime_error(code)

    def playback_dropped(self, seconds: float) -> None:
        self.metrics.playback_dropped.inc(seconds)


class EventMetrics:
    """The call events' delivery (hooks.events), in a registry of their own or the gateway's.
    `type` is one of the five event types (other counts as other)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = PREFIX
        self.delivered = Counter(
            f"{p}_events_delivered",
            "Events the receiver answered with a 2xx, by type.",
            ["type"],
            registry=r,
        )
        self.retried = Counter(
            f"{p}_events_retried", "Delivery attempts that were retries.", registry=r
        )
        self.failed = Counter(
            f"{p}_events_failed",
            "Delivery attempts that failed (no answer in time, an error, not a 2xx).",
            registry=r,
        )
        self.dropped = Counter(
            f"{p}_events_dropped",
            "Events dropped undelivered: the oldest, beyond hooks.events.max_pending.",
            registry=r,
        )
        self.pending = Gauge(
            f"{p}_events_pending", "Events in the outbox, not yet delivered.", registry=r
        )

    def was_delivered(self, kind: str) -> None:
        self.delivered.labels(kind if kind in EVENT_TYPES else OTHER).inc()


EVENT_TYPES = frozenset(config_hooks.EVENT_TYPES)  # the event types a config may name


_DETACHED: Metrics | None = None


def _detached() -> Metrics:
    """Metrics nobody serves, for a bridge built without them (unit tests)."""
    global _DETACHED
    if _DETACHED is None:
        _DETACHED = Metrics()
    return _DETACHED


class MetricsServer:
    """/metrics, /healthz (the event loop answers), /readyz (`ready()`: 200, else 503) and,
    only with `debug_state` (metrics.debug_state; 404 otherwise), /debug/state
    (`state(collect)`: counts of what the process holds, for leak hunting and soak runs, after
    a full garbage collection with ?gc=1; answered to loopback clients only, whatever `bind`
    is)."""

    def __init__(
        self,
        metrics: Metrics,
        bind: str,
        port: int,
        ready: Callable[[], bool],
        state: Callable[[bool], dict[str, Any]] = lambda collect: {},
        *,
        debug_state: bool = False,
    ) -> None:
        self.metrics = metrics
        self.bind = bind
        self.port = port
        self._ready = ready
        self._state = state
        self._debug_state_on = debug_state
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self._debug_state_on:
            app.router.add_get("/debug/state", self._debug_state)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.bind, self.port, reuse_address=True).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        # The text format a Prometheus server asks for (Accept), as prometheus-client serves it.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encode(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def _debug_state(self, request: web.Request) -> web.Response:
        if not _loopback(request.remote):
            return web.Response(status=403, text="/debug/state answers loopback clients only\n")
        return web.json_response(self._state(request.query.get("gc") == "1"))


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
