"""The daemon: SIP listeners, the call registry, limits, and one task per call.

A call is answered only once its Realtime session is open and configured;
anything that fails before that gets a precise SIP error, never 200 then silence.
Signals, readiness and draining are `lifecycle.Service`'s job; metrics are `metrics.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from aiosipua import IncomingCall, SdpMessage, SipRequest, SipUAC, serialize_sdp
from aiosipua.dialog import DialogState

from . import __version__
from .agent import EmbeddedRealtimeServer
from .bridge import playback
from .bridge.actions import Actions
from .bridge.call import CallBridge
from .bridge.call_limits import CallLimits
from .bridge.recording import Recording
from .bridge.tools import Tools
from .bridge.transcript import TranscriptLog
from .call_record import CallRecord, now_iso
from .config import AgentConfig, GatewayConfig, SipSessionTimersConfig, api_key, sip_passwords
from .durable import errno_name
from .gc_pauses import FullCollections, GcPauses
from .media.stream import NoPortAvailable, PortAllocator, RtpStream, local_ip_towards
from .metrics import CallProbe, Metrics, MetricsServer
from .realtime.auth import ApiKeyAuth, Auth, EntraAuth, NoAuth
from .realtime.client import RealtimeConnectError
from .realtime.link import RealtimeLink
from .realtime.protocol import dialect_for
from .routing import CallInfo, Router
from .sip.blocklist import AuthBlocklist
from .sip.digest import DigestVerifier
from .sip.door import Door
from .sip.leg import CallLeg
from .sip.register import Registrar
from .sip.sdp import NotAcceptable, SdpSession, SrtpPolicy, srtp_session
from .sip.session_timer import SESSION_TIMER_EXPIRED, TimerPolicy
from .sip.tls import TlsSettings, TlsSetupError, client_context, server_context
from .sip.transactions import SipTimers
from .sip.transport import (
    Listener,
    TcpLimits,
    TcpTransport,
    TlsTransport,
    UdpTransport,
    bound_port,
)
from .sip.uas import GatewayUAS, reject, respond

log = structlog.get_logger("gateway")

SHUTDOWN_GRACE_S = 5.0
RETRY_AFTER_S = 5  # what a full or draining gateway asks a PBX to wait before retrying
SETUP_REJECTIONS = ("not_acceptable", "no_rtp_port", "realtime_unavailable")
REFUSALS = ("unauthorized", "auth_blocked", "draining", "max_calls")  # _refusal's labels
END_OF_SERVICE = ("shutdown", "drain_timeout", "failure")  # Service.run's stop reasons
SIP_STATUS_BY_REASON = {
    "not_acceptable": 488,
    "no_rtp_port": 503,
    "realtime_unavailable": 503,
    "caller_cancel": 487,  # the INVITE's answer once CANCELled (RFC 3261 §9.2)
}
RELOADABLE = ("agent", "profiles", "routes")  # what a reload (SIGHUP) applies to new calls
_PHRASES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}


class StartupError(Exception):
    """The daemon cannot start (port taken, credentials missing): exit non-zero."""


@dataclass
class ActiveCall:
    id: str
    sip: IncomingCall
    uas: GatewayUAS
    received_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    end_reason: str | None = None
    leg: CallLeg | None = None
    bridge: CallBridge | None = None


class Gateway:
    def __init__(self, cfg: GatewayConfig, *, sip_timers: SipTimers | None = None) -> None:
        self.cfg = cfg
        self.calls: dict[str, ActiveCall] = {}  # by SIP Call-ID
        self._timers = sip_timers or SipTimers()
        self._uas: list[GatewayUAS] = []
        self._registrar: Registrar | None = None
        self._digest: DigestVerifier | None = None
        self._blocklist: AuthBlocklist | None = None
        self._ports = PortAllocator(cfg.media.rtp_port_min, cfg.media.rtp_port_max)
        self._door = Door(cfg.sip.allow_from, cfg.sip.reject_unknown)
        # Where a caller's SDP may send our RTP: media.allow_to, else where SIP may come from.
        self._media_door = Door(cfg.media.allow_to or cfg.sip.allow_from)
        self._embedded: EmbeddedRealtimeServer | None = None
        self._auth: Auth = NoAuth()
        self._base_url = cfg.realtime.url
        self._dialect = dialect_for(cfg.realtime.protocol, cfg.realtime.api_version)
        self.sip_port = cfg.sip.port
        self.tls_port = cfg.sip.tls.port
        self.router = Router(cfg)
        self.metrics = Metrics()
        self.gc_pauses = GcPauses()
        self.full_collections = FullCollections()
        self.metrics.active_calls.set_function(lambda: len(self.calls))
        self._metrics_server: MetricsServer | None = None
        self.ready = False  # SIP listens and the Realtime side was checked
        # Why the gateway cannot go on (a SIP listener stopped): not ready, and the service
        # manager restarts the process (lifecycle.py).
        self.failure: str | None = None
        self.on_failure: Callable[[str], None] = lambda reason: None
        self.draining = False  # stopping: new calls and OPTIONS get 503
        self._writes: set[asyncio.Task[None]] = set()  # records of refused calls being written
        self.on_calls_changed: Callable[[], None] = lambda: None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.gc_pauses.install()
        self.full_collections.install()
        rt = self.cfg.realtime
        if rt.embedded:
            self._embedded = EmbeddedRealtimeServer("127.0.0.1", 0, keep_events=0)
            await self._embedded.start()
            self._base_url = self._embedded.url
        elif rt.auth.method in ("api_key", "bearer"):
            key = api_key(self.cfg)
            if not key:
                raise StartupError(
                    f"realtime.auth.api_key_env: environment variable {rt.auth.api_key_env} "
                    "is not set"
                )
            self._auth = ApiKeyAuth(
                key, env_name=rt.auth.api_key_env, bearer=rt.auth.method == "bearer"
            )
        elif rt.auth.method == "entra":
            self._auth = EntraAuth(rt.auth.entra_scope)
            await self._check_token()
        await self._start_metrics()

        for key in ("transcripts_dir", "recordings_dir", "calls_dir"):
            _writable_dir(f"records.{key}", getattr(self.cfg.records, key))

        sip = self.cfg.sip
        users, register_password = sip_passwords(self.cfg)
        if sip.auth is not None:
            missing = [u.password_env for u in sip.auth.users if u.username not in users]
            if missing:
                raise StartupError(f"sip.auth.users: environment variable {missing[0]} is not set")
            self._digest = DigestVerifier(sip.auth.realm, users, algorithms=sip.auth.algorithms)
            blocklist = AuthBlocklist(
                sip.auth.max_failures, sip.auth.failure_window_s, sip.auth.block_s
            )
            self.metrics.auth_blocked_sources.set_function(blocklist.blocked_sources)
            self._blocklist = blocklist
        if sip.registration is not None and register_password is None:
            raise StartupError(
                f"sip.register.password_env: environment variable "
                f"{sip.registration.password_env} is not set"
            )
        for kind in sip.transports:
            try:
                transport = self._listener(kind)
            except TlsSetupError as exc:
                await self.stop()
                raise StartupError(f"sip.tls: {exc}") from None
            uas = GatewayUAS(
                transport,
                user_agent=sip.user_agent,
                timers=self._timers,
                session_timers=session_policy(sip.session_timers),
            )
            self._wire(uas)
            try:
                await uas.start()
            except OSError as exc:
                await self.stop()
                raise StartupError(
                    f"cannot listen for SIP on {kind} {sip.bind}:{transport.local_addr[1]}: "
                    f"{exc.strerror}"
                ) from None
            self._uas.append(uas)
            if kind == "tls":  # its own port (sip.tls.port)
                self.tls_port = bound_port(transport) or self.tls_port
                transport.local_addr = (transport.local_addr[0], self.tls_port)
                continue
            # With port 0 (tests), every further transport shares the port the first one got.
            self.sip_port = bound_port(transport) or self.sip_port
            transport.local_addr = (transport.local_addr[0], self.sip_port)
        if sip.registration is not None and register_password is not None:
            self._start_registration(register_password)
        self.ready = True
        metrics = self.cfg.metrics
        log.info(
            "gateway.ready",
            sip=f"{sip.bind}:{self.sip_port}",
            tls=f"{sip.bind}:{self.tls_port}" if "tls" in sip.transports else None,
            transports=sip.transports,
            realtime="embedded:echo" if rt.embedded else rt.url,
            deployment=None if rt.embedded else rt.deployment,
            metrics=f"{metrics.bind}:{metrics.port}" if metrics.enabled else None,
            version=__version__,
        )

    def _listener(self, kind: str) -> Listener:
        sip = self.cfg.sip
        local = (sip.bind, self.sip_port)
        transport: Listener
        if kind == "udp":
            transport = UdpTransport(local, self._door)
        else:
            tcp = sip.tcp
            limits = TcpLimits(
                tcp.max_connections,
                tcp.max_connections_per_source,
                tcp.idle_timeout_s,
                tcp.message_timeout_s,
                tcp.max_send_buffer_kib * 1024,
            )
            tcp_transport: TcpTransport
            if kind == "tls":
                tls = _tls_settings(self.cfg)
                tcp_transport = TlsTransport(
                    (sip.bind, self.tls_port),
                    server_context(tls),
                    self._door,
                    limits,
                    client=client_context(tls),
                    allowed_names=tls.allowed_names,
                    handshake_timeout_s=tls.handshake_timeout_s,
                )
            else:
                tcp_transport = TcpTransport(local, self._door, limits)
            tcp_transport.busy = self._carries_call
            transport = tcp_transport
        name = transport.name
        transport.on_drop = lambda reason: self.metrics.sip_drop(name, reason)
        transport.on_dead = self._fail
        return transport

    def _carries_call(self, source: tuple[str, int]) -> bool:
        return any(call.sip.source_addr == source for call in self.calls.values())

    def _fail(self, reason: str) -> None:
        """A listener stopped: the gateway can no longer be reached. Not ready from now on,
        and the process must end (non-zero) so that systemd starts a working one."""
        if self.failure is not None:
            return
        self.failure = reason
        self.ready = False
        log.error("gateway.failed", reason=reason)
        self.on_failure(reason)

    def check_listeners(self) -> None:
        """Every listener still listens (the watchdog's check: a dead one is a failure)."""
        for uas in self._uas:
            if not uas.transport.alive:
                self._fail(f"{uas.transport.name} listener stopped")
                return

    def _wire(self, uas: GatewayUAS) -> None:
        uas.on_invite = lambda call: self._on_invite(uas, call)
        uas.on_bye = lambda call, request: self._end(call.call_id, "caller_bye")
        uas.on_cancelled = lambda call: self._end(call.call_id, "caller_cancel")
        uas.on_key = self._on_info_key
        uas.on_ack_timeout = lambda call: self._end(call.call_id, "ack_timeout")
        uas.on_ack = self._on_ack
        uas.on_reinvite = self._on_reinvite
        uas.unavailable = self._unavailable
        uas.on_session_expired = lambda call: self._end(call.call_id, SESSION_TIMER_EXPIRED)
        uas.refreshes.local_sdp = self._local_sdp
        uas.refreshes.on_answer = self._on_refresh_answer

    def _start_registration(self, password: str) -> None:
        reg = self.cfg.sip.registration
        kind = reg.transport.upper() if reg is not None else "UDP"
        uas = next((u for u in self._uas if u.transport.name == kind), None)
        if reg is None or uas is None:
            raise StartupError(f"sip.register needs {kind.lower()} in sip.transports")
        port = self.tls_port if kind == "TLS" else self.sip_port
        contact = (self._local_ip(reg.registrar_address[0]), port)
        uas.uac = SipUAC(uas.transport, advertised_addr=contact)
        tls = uas.transport if isinstance(uas.transport, TlsTransport) else None
        self._registrar = Registrar(
            uas.uac, reg, password, contact, user_agent=self.cfg.sip.user_agent, tls=tls
        )
        self._registrar.start()

    async def _check_token(self) -> None:
        """Entra: a token must be obtainable before the gateway says it is ready."""
        try:
            async with asyncio.timeout(self.cfg.realtime.connect_timeout_s):
                await self._auth.headers()
        except Exception as exc:  # azure-identity raises several types; none carry secrets
            await self._auth.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise StartupError(
                f"realtime.auth.method entra: no token for {self.cfg.realtime.auth.entra_scope} "
                f"({reason}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
            ) from None

    async def _start_metrics(self) -> None:
        cfg = self.cfg.metrics
        if not cfg.enabled:
            return
        server = MetricsServer(
            self.metrics,
            cfg.bind,
            cfg.port,
            lambda: self.ready and not self.draining,
            self.debug_state,
            debug_state=cfg.debug_state,
        )
        try:
            await server.start()
        except OSError as exc:
            await self.stop()
            raise StartupError(
                f"metrics: cannot listen on {cfg.bind}:{cfg.port}: {exc.strerror or exc}"
            ) from None
        self._metrics_server = server

    async def stop(self, reason: str = "shutdown") -> None:
        """Hang up every call (BYE), then close listeners and the embedded agent."""
        self.ready = False
        if self._registrar is not None:
            await self._registrar.stop()
            self._registrar = None
        for call in list(self.calls.values()):
            self._end(call.sip.call_id, reason)
        tasks = [c.task for c in self.calls.values() if c.task is not None] + list(self._writes)
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
        for uas in self._uas:
            await uas.stop()
        self._uas.clear()
        if self._embedded is not None:
            await self._embedded.close()
            self._embedded = None
        await self._auth.close()
        if self._metrics_server is not None:
            await self._metrics_server.close()
            self._metrics_server = None
        self.gc_pauses.remove()
        self.full_collections.remove()
        log.info("gateway.stopped")

    def debug_state(self, collect: bool = False) -> dict[str, Any]:
        """What the process holds now (/debug/state): flat in a soak run, or something leaks.

        ``collect`` runs a full garbage collection first (tens of ms on the event loop: a
        debugging tool), so that what is counted is alive, not garbage not yet collected.
        """
        if collect:
            gc.collect()
        buffers = list(playback.LIVE)
        return {
            "calls": len(self.calls),
            "tasks": len(asyncio.all_tasks()),
            "fds": _count_fds(),
            "rss_mib": _rss_mib(),
            "rtp_ports_in_use": self._ports.in_use,
            "playback_buffers": len(buffers),
            "playback_buffered_s": round(sum(b.buffered_ms for b in buffers) / 1000, 3),
            "gc_objects": len(gc.get_objects()),
            "gc_pauses": self.gc_pauses.as_dict(),
            "gc_full_collections": self.full_collections.as_dict(),
        }

    def apply_config(
        self, new: GatewayConfig, tls: TlsContexts | None = None
    ) -> tuple[list[str], list[str]]:
        """A reloaded config: new calls get its agent, profiles and routes; calls in progress
        keep theirs. New TLS connections get the certificate read again (`tls`: read by
        `prepare_tls`, in a thread; read here when not given).

        Returns the sections applied and the changed sections that need a restart.
        """
        changed = [
            name for name in type(new).model_fields if getattr(new, name) != getattr(self.cfg, name)
        ]
        applied = [name for name in changed if name in RELOADABLE]
        self.cfg = self.cfg.model_copy(update={name: getattr(new, name) for name in applied})
        if applied:
            self.router = Router(self.cfg)  # a call in progress keeps the route it was given
        needs_restart = [name for name in changed if name not in RELOADABLE]
        same_sip = _without_tls(new) == _without_tls(self.cfg)
        same_port = new.sip.tls.port == self.cfg.sip.tls.port
        if self.reload_tls(new, tls if tls is not None else self.prepare_tls(new)):
            applied.append("sip.tls")
            if "sip" in needs_restart and same_sip and same_port:
                needs_restart.remove("sip")  # only sip.tls changed, and it was applied
        return applied, needs_restart

    def _tls_listener(self) -> TlsTransport | None:
        return next((u.transport for u in self._uas if isinstance(u.transport, TlsTransport)), None)

    def prepare_tls(self, new: GatewayConfig) -> TlsContexts:
        """The TLS contexts of a reloaded config, from the files as they are now (reading
        them takes milliseconds: the reload runs this in a thread). An error says why not."""
        if self._tls_listener() is None or "tls" not in new.sip.transports:
            return "not listening on TLS"
        tls = _tls_settings(new)
        try:
            return server_context(tls), client_context(tls)
        except TlsSetupError as exc:
            return exc

    def reload_tls(self, new: GatewayConfig, contexts: TlsContexts) -> bool:
        """SIGHUP: the TLS certificate, key and peer checks read again into a new context for
        new connections (those open keep theirs). A pair that cannot be used is refused and
        the old context kept. True when the listener got the new one."""
        listener = self._tls_listener()
        if listener is None or isinstance(contexts, str):
            return False
        if isinstance(contexts, TlsSetupError):
            log.error("sip.tls_reload_failed", error=str(contexts), kept="the running certificate")
            return False
        tls = _tls_settings(new)
        context, client = contexts
        listener.context = context
        listener.client = client
        listener.allowed_names = tls.allowed_names
        listener.handshake_timeout_s = tls.handshake_timeout_s
        # The port stays what the listener is bound to until a restart.
        kept = new.sip.tls.model_copy(update={"port": self.cfg.sip.tls.port})
        self.cfg = self.cfg.model_copy(
            update={"sip": self.cfg.sip.model_copy(update={"tls": kept})}
        )
        log.info("sip.tls_reloaded", cert_file=str(tls.cert_file))
        return True

    # --- SIP events ---------------------------------------------------------------------------

    def _on_invite(self, uas: GatewayUAS, sip: IncomingCall) -> None:
        source = sip.source_addr[0]
        clog = log.bind(sip_call_id=sip.call_id, source=f"{source}:{sip.source_addr[1]}")
        if sip.call_id in self.calls:
            # The same Call-ID on another transport: a merged request (§8.2.2.2), never a
            # replacement of the call in progress.
            clog.warning("call.rejected", status=482, reason="Call-ID of a call in progress")
            reject(sip, 482, "Loop Detected")
            uas.forget(sip)
            return
        refusal = self._refusal(sip)
        if refusal is not None:
            status, label, why, headers = refusal
            # A blocked source's INVITEs: its block was logged once, they leave no record.
            blocked = label == "auth_blocked"
            (clog.debug if blocked else clog.warning)("call.rejected", status=status, reason=why)
            self.metrics.rejected(label)
            if blocked:
                uas.refuse_call(sip, status, _PHRASES[status])  # once, no transaction
            else:
                reject(sip, status, _PHRASES[status], headers=headers)
                uas.forget(sip)
            if status != 401 and not blocked:  # a challenge is part of the digest exchange
                self._record_refusal(sip, status, label)
            return
        call = ActiveCall(secrets.token_hex(6), sip, uas)
        self.calls[sip.call_id] = call
        call.task = asyncio.get_running_loop().create_task(
            self._handle_call(call), name=f"call-{call.id}"
        )
        self.on_calls_changed()

    def _record_refusal(self, sip: IncomingCall, status: int, label: str) -> None:
        directory = self.cfg.records.calls_dir
        if directory is None:
            return
        record = CallRecord(
            secrets.token_hex(6),
            sip.call_id,
            sip.caller,
            sip.callee,
            f"{sip.source_addr[0]}:{sip.source_addr[1]}",
            dialed=CallInfo.from_invite(sip).dialed,
            end_reason=label,
            sip_status=status,
        )
        record.ended_at = record.received_at
        task = asyncio.get_running_loop().create_task(self._write_refusal(record, directory))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_refusal(self, record: CallRecord, directory: Path) -> None:
        await self._save_record(record, directory, log)

    def _refusal(
        self, sip: IncomingCall
    ) -> tuple[int, str, str, dict[str, str | list[str]]] | None:
        """Why an INVITE cannot be taken: (status, metric label, log reason, extra headers).
        (A source outside sip.allow_from never gets this far: the transport's door.)"""
        source = sip.source_addr[0]
        if self._digest is not None and self._blocklist is not None:
            if self._blocklist.blocked(source):
                return 403, "auth_blocked", "source blocked: repeated authentication failures", {}
            verdict = self._digest.verify(sip.invite, source)
            if not verdict.ok:
                why = f"digest: {verdict.reason}"
                if verdict.failure and self._blocklist.failed(source):
                    self.metrics.auth_blocks.inc()
                    log.warning(
                        "sip.auth_blocked",
                        source=source,
                        failures=self._blocklist.max_failures,
                        window_s=self._blocklist.window_s,
                        block_s=self._blocklist.block_s,
                    )
                    return 403, "auth_blocked", why, {}
                if verdict.status == 400:
                    return 400, "unauthorized", why, {}
                challenges = self._digest.challenges(source, stale=verdict.stale)
                return 401, "unauthorized", why, {"WWW-Authenticate": challenges}
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        if self.draining:
            return 503, "draining", "the gateway is stopping", retry
        if len(self.calls) >= self.cfg.sip.max_calls:
            return 503, "max_calls", "sip.max_calls reached", retry
        return None

    def _unavailable(self) -> bool:
        """OPTIONS get 503 too when an INVITE would: a PBX's health check sees it first."""
        return self.draining or len(self.calls) >= self.cfg.sip.max_calls

    def _on_ack(self, sip: IncomingCall, request: SipRequest) -> None:
        call = self.calls.get(sip.call_id)
        if call is None or call.leg is None:
            return
        try:
            call.leg.on_ack(request)
        except NotAcceptable as exc:
            log.warning("call.bad_answer", call_id=call.id, reason=str(exc))
            self._end(sip.call_id, "bad_sdp_answer")

    def _on_reinvite(self, sip: IncomingCall) -> None:
        call = self.calls.get(sip.call_id)
        if call is None or call.leg is None:  # still being set up, or already ending
            respond(sip, 500, "Server Internal Error", retry_after=1)  # §14.2
            return
        call.leg.on_reinvite()

    def _local_sdp(self, sip: IncomingCall) -> SdpMessage | None:
        """The SDP we last sent in this call: a refresh re-INVITE repeats it (RFC 4028 §7.4)."""
        call = self.calls.get(sip.call_id)
        return call.leg.sdp.local if call is not None and call.leg is not None else None

    def _on_refresh_answer(self, sip: IncomingCall, answer: SdpMessage) -> None:
        call = self.calls.get(sip.call_id)
        if call is not None and call.leg is not None:
            call.leg.on_refresh_answer(answer)

    def _on_info_key(self, sip: IncomingCall, digit: str) -> None:
        """A key sent as SIP INFO goes the same way as an RFC 4733 one."""
        call = self.calls.get(sip.call_id)
        if call is not None and call.bridge is not None:
            call.bridge.key(digit, source="info")

    def _end(self, sip_call_id: str, reason: str) -> None:
        call = self.calls.get(sip_call_id)
        if call is None or call.task is None or call.end_reason is not None:
            return
        call.end_reason = reason
        call.task.cancel()

    # --- one call -----------------------------------------------------------------------------

    async def _handle_call(self, call: ActiveCall) -> None:
        sip = call.sip
        # In this task's context: every line logged by the call, its bridge and the libraries
        # it calls (websockets) carries both ids (observability.py merges contextvars).
        structlog.contextvars.bind_contextvars(call_id=call.id, sip_call_id=sip.call_id)
        clog = log.bind(call_id=call.id, sip_call_id=sip.call_id)
        clog.info(
            "call.received",
            caller=sip.caller,
            callee=sip.callee,
            source=f"{sip.source_addr[0]}:{sip.source_addr[1]}",
            late_offer=sip.sdp_offer is None,
        )
        session: RealtimeLink | None = None
        stream: RtpStream | None = None
        transcript: TranscriptLog | None = None
        bridge: CallBridge | None = None
        recording: Recording | None = None
        info = CallInfo.from_invite(sip)
        record = CallRecord(
            call.id,
            sip.call_id,
            sip.caller,
            sip.callee,
            f"{sip.source_addr[0]}:{sip.source_addr[1]}",
            dialed=info.dialed,
        )
        answered_at: float | None = None
        opening: asyncio.Task[None] | None = None  # the record's in_progress write
        reason = "unknown"
        try:
            local_ip = self._local_ip(sip.source_addr[0])
            sip.advertised_addr = (local_ip, call.uas.transport.local_addr[1])
            media = self.cfg.media
            srtp = SrtpPolicy(
                media.srtp,
                tuple(media.srtp_suites),
                secure_signalling=call.uas.transport.name == "TLS",
                allow_insecure=media.srtp_over_insecure_signalling,
            )
            sdp = SdpSession(media.codecs, local_ip, allow_to=self._media_door, srtp=srtp)
            plan = sdp.first_plan(sip.sdp_offer)
            route = self.router.select(info)
            record.profile, record.codec = route.profile, plan.codec.name
            clog.info("call.routed", profile=route.profile)
            stream = await RtpStream.open(
                self._ports,
                self.cfg.sip.bind,
                lambda: RtpStream(
                    plan.codec,
                    plan.payload_type,
                    plan.remote,
                    _drop,
                    plan.ptime_ms,
                    dtmf_payload_type=plan.dtmf_payload_type,
                    strict=self.cfg.media.strict_rtp,
                    learn_packets=self.cfg.media.rtp_learn_packets,
                ),
            )
            sdp.rtp_port = stream.port
            started = time.monotonic()
            session = await RealtimeLink.connect(
                self.cfg.realtime,
                route.agent,
                base_url=self._base_url,
                dialect=self._dialect,
                auth=self._auth,
                codec=plan.codec.name,
                log=clog,
            )
            handshake_s = time.monotonic() - started
            self.metrics.handshake.observe(handshake_s)
            clog.info(
                "realtime.session_open",
                session_id=session.id,
                handshake_ms=round(handshake_s * 1000),
            )
            transcript = TranscriptLog.open(
                self.cfg.records.transcripts_dir,
                call.id,
                clog,
                sip_call_id=sip.call_id,
                caller=sip.caller,
                callee=sip.callee,
                on_failure=partial(self.metrics.write_failed, "transcript"),
            )
            recording = self._recording(call.id, route.agent, stream.frame_samples)
            tools = Tools(route.agent.tools, _tool_call_data(call.id, info, route.profile))
            actions = Actions(tools, partial(call.uas.transfer, sip), clog)
            bridge = CallBridge(
                session,
                stream,
                plan.codec,
                self.cfg.realtime.audio_format,
                route.agent,
                clog,
                transcript,
                probe=CallProbe(self.metrics),
                actions=actions,
                recording=recording,
                playback_buffer_s=self.cfg.media.playback_buffer_s,
                rtp_timeout_s=self.cfg.media.rtp_timeout_s,
                limits=CallLimits(self.cfg.limits.max_call_s, self.cfg.media.hold_timeout_s),
            )
            stream.on_payload = bridge.on_payload
            call.bridge = bridge
            # Late offer (§13.2.1): our offer goes in the 200, the answer comes in the ACK.
            if sip.sdp_offer is not None:
                plan, local_sdp = sdp.answer(sip.sdp_offer)
                stream.srtp = srtp_session(plan)
            else:
                local_sdp = sdp.offer()
            call.leg = CallLeg(sip, sdp, stream, clog)
            sip.accept(local_sdp)
            answered_at = time.monotonic()
            record.answered_at = now_iso()
            if recording is not None:
                recording.start()
                record.recording = str(recording.path)
            record.transcript = transcript.path
            opening = self._write_opening_record(record, clog)
            self.metrics.answered()
            clog.info(
                "call.answered",
                codec=plan.codec.name,
                rtp_local=f"{local_ip}:{stream.port}",
                rtp_remote=_fmt(plan.remote),
                ptime_ms=plan.ptime_ms,
                srtp=stream.srtp.suite if stream.srtp is not None else None,
            )
            if stream.srtp is None:  # (an SDP with a=crypto holds a key: never logged)
                clog.debug("sip.sdp_local", sdp=serialize_sdp(local_sdp))
            reason = await bridge.run()
            clog.info("call.bridge_ended", reason=reason, **bridge.stats.usage)
        except NotAcceptable as exc:
            reason = "not_acceptable"
            clog.warning("call.rejected", status=488, reason=str(exc))
            reject(sip, 488, "Not Acceptable Here")
        except NoPortAvailable as exc:
            reason = "no_rtp_port"
            clog.error("call.rejected", status=503, reason=str(exc))
            reject(sip, 503, "Service Unavailable", retry_after=RETRY_AFTER_S)
        except RealtimeConnectError as exc:
            reason = "realtime_unavailable"
            clog.error("call.rejected", status=503, reason=exc.reason, http_status=exc.status)
            self.metrics.realtime_error(f"http_{exc.status}" if exc.status else "connect_failed")
            reject(sip, 503, "Service Unavailable", retry_after=exc.retry_after)
        except asyncio.CancelledError:
            reason = call.end_reason or "cancelled"
            if call.end_reason is None:
                raise
        except Exception:
            reason = "internal_error"
            clog.exception("call.failed")
            if answered_at is None and sip.dialog.state == DialogState.EARLY:
                reject(sip, 500, "Server Internal Error")
        finally:
            reason = call.end_reason or reason
            if transcript is not None:
                transcript.close(reason)
            if reason != "caller_bye":
                call.uas.send_bye(sip)
            if session is not None:
                await session.close()
                clog.info("realtime.session_closed", session_id=session.id)
            if recording is not None:
                await recording.close()
            if stream is not None:
                record.rtp = stream.summary()
                clog.info("rtp.stats", **record.rtp)
                stream.close()
                self._ports.release(stream.port)
            call.uas.forget(sip)
            self.calls.pop(sip.call_id, None)
            duration_s = time.monotonic() - answered_at if answered_at else 0.0
            self._count_end(reason, answered_at is not None, duration_s, stream)
            # The record first: whoever reads "call.ended" can rely on the record being there.
            await self._write_record(
                record, reason, answered_at, duration_s, call, bridge, clog, opening
            )
            clog.info(
                "call.ended",
                reason=reason,
                duration_s=round(duration_s, 3),
                setup_ms=round(((answered_at or time.monotonic()) - call.received_at) * 1000),
                # rtp_in 0 on an answered call: the caller's audio never reached us (firewall,
                # NAT); see README, Troubleshooting.
                rtp_in=stream.stats.packets_in if stream else 0,
                rtp_out=stream.stats.packets_out if stream else 0,
            )
            self.full_collections.call_ended(len(self.calls))
            self.on_calls_changed()

    def _recording(self, call_id: str, agent: AgentConfig, frame_samples: int) -> Recording | None:
        directory = self.cfg.records.recordings_dir
        if not agent.recording or directory is None:
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        failed = partial(self.metrics.write_failed, "recording")
        return Recording(directory / f"{stamp}_{call_id}.wav", frame_samples, failed)

    def _write_opening_record(self, record: CallRecord, clog: Any) -> asyncio.Task[None] | None:
        """The answered call's record, state in_progress, written in the background (the
        media starts at once): a call cut short by a killed process still has its record."""
        directory = self.cfg.records.calls_dir
        if directory is None:
            return None
        record.state = "in_progress"
        return asyncio.get_running_loop().create_task(
            self._save_record(record, directory, clog), name=f"record-{record.call_id}"
        )

    def _save_record(self, record: CallRecord, directory: Path, clog: Any) -> Awaitable[None]:
        """Write the record as it is now (taken at this call, written later); a failure (full
        disk) is logged and counted, never raised: the call goes on."""
        return self._saved(record.write(directory), record.state, directory, clog)

    async def _saved(
        self, writing: Awaitable[None], state: str, directory: Path, clog: Any
    ) -> None:
        try:
            await writing
        except OSError as exc:
            clog.error(
                "call.record_failed",
                directory=str(directory),
                state=state,
                errno=errno_name(exc),
                error=exc.strerror,
            )
            self.metrics.write_failed("call_record")

    async def _write_record(
        self,
        record: CallRecord,
        reason: str,
        answered_at: float | None,
        duration_s: float,
        call: ActiveCall,
        bridge: CallBridge | None,
        clog: Any,
        opening: asyncio.Task[None] | None = None,
    ) -> None:
        """The call's final record, state completed, once its in_progress version (`opening`)
        is on disk: never the other way round."""
        directory = self.cfg.records.calls_dir
        if directory is None:
            return
        if opening is not None:
            await asyncio.wait({opening})
        record.state = "completed"
        record.ended_at = now_iso()
        record.end_reason = reason
        record.setup_ms = round(((answered_at or time.monotonic()) - call.received_at) * 1000)
        record.duration_s = round(duration_s, 3)
        record.sip_status = None if answered_at else SIP_STATUS_BY_REASON.get(reason)
        if bridge is not None:
            record.usage = dict(bridge.stats.usage)
            record.tool_calls = list(bridge.actions.tool_calls)
            record.transcript = bridge.transcript.path
        await self._save_record(record, directory, clog)

    def _count_end(
        self, reason: str, answered: bool, duration_s: float, stream: RtpStream | None
    ) -> None:
        if stream is not None:
            self.metrics.rtp(stream.stats)
        if reason.startswith("realtime_closed:") and not reason.endswith(":1000"):
            self.metrics.realtime_error(f"close_{reason.split(':', 1)[1]}")
        if answered:
            self.metrics.ended(reason, duration_s)
        elif reason in SETUP_REJECTIONS:
            self.metrics.rejected(reason)
        elif reason in ("caller_cancel", "shutdown", "drain_timeout"):
            self.metrics.unanswered("cancelled", reason)
        else:
            self.metrics.unanswered("failed", reason)

    def _local_ip(self, peer: str) -> str:
        """The address to put in Contact and SDP: configured, bound, or the route's source."""
        sip = self.cfg.sip
        if sip.advertise_address:
            return sip.advertise_address
        if sip.bind not in ("0.0.0.0", "::"):
            return sip.bind
        return local_ip_towards(peer)


# What prepare_tls gives: the server and client contexts, an error, or why there are none.
TlsContexts = tuple[ssl.SSLContext, ssl.SSLContext] | TlsSetupError | str


def _tls_settings(cfg: GatewayConfig) -> TlsSettings:
    tls = cfg.sip.tls
    if tls.cert_file is None or tls.key_file is None:  # the config's validator prevents it
        raise TlsSetupError("sip.tls.cert_file and sip.tls.key_file are required")
    return TlsSettings(
        tls.cert_file,
        tls.key_file,
        tls.ca_file,
        tls.verify_peer,
        tuple(tls.allowed_names),
        tls.handshake_timeout_s,
    )


def _without_tls(cfg: GatewayConfig) -> object:
    return cfg.sip.model_copy(update={"tls": None})


def _tool_call_data(call_id: str, info: CallInfo, profile: str) -> dict[str, str]:
    """What a webhook learns about the call (the `call` object of its request)."""
    return {
        "call_id": call_id,
        "caller": info.caller,
        "caller_name": info.caller_name,
        "dialed": info.dialed,
        "profile": profile,
    }


def _drop(payload: bytes) -> None:
    """RTP that arrives before the bridge exists (early media from the caller)."""


def _fmt(addr: tuple[str, int] | None) -> str | None:
    return f"{addr[0]}:{addr[1]}" if addr else None


def _count_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return None


def _rss_mib() -> float | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _writable_dir(key: str, directory: Path | None) -> None:
    """Create a records directory at start, or refuse to start naming the key."""
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"{key}: cannot create {directory}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StartupError(f"{key}: {directory} is not writable")
    # A process killed between writing a record's NAME.tmp and renaming it left one behind;
    # the record it was to replace is still there (durable.py).
    for stale in directory.glob("*.json.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
            log.info("records.stale_tmp_removed", path=str(stale))


def session_policy(cfg: SipSessionTimersConfig) -> TimerPolicy | None:
    """sip.session_timers as the UAS takes it; None when they are off."""
    return TimerPolicy(cfg.expires_s, cfg.min_se_s, cfg.refresher) if cfg.enabled else None
