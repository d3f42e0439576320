"""The daemon: SIP listeners, the call registry, limits, and one task per call.

A call is answered only once its Realtime session is open and configured;
anything that fails before that gets a precise SIP error, never 200 then silence.
Setting up and tearing down one call is `bridge.setup`'s job; who may call, `admission`'s;
signals, readiness and draining are `lifecycle.Service`'s; metrics are `metrics.py`'s.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
from aiosipua import IncomingCall, SipUAC

from . import __version__
from .admission import Admission
from .agent import EmbeddedRealtimeServer
from .api.server import ApiServer
from .bridge.setup import ActiveCall, CallServices, run_call
from .call_controls import start_api
from .call_record import RecordWriter
from .calls import Calls
from .config import GatewayConfig, sip_passwords
from .console.counts import ConsoleMetrics
from .console.hub import Hub
from .debug_state import debug_state
from .gc_pauses import FullCollections, GcPauses
from .hooks.decide import DecisionHook, decision_hook
from .hooks.delivery import EventDelivery, start_events
from .hooks.events import Emit, no_events
from .listeners import TlsContexts, build_listener, prepare_tls, session_policy
from .media import native
from .media.stream import PortAllocator, local_ip_towards
from .metrics import EventMetrics, Metrics, MetricsServer
from .outbound import Dialer
from .realtime.auth import Auth, NoAuth
from .realtime.protocol import dialect_for
from .refusals import PHRASES
from .reload import RELOADABLE, apply_config
from .routing import Router
from .sip.answer import reject
from .sip.door import Door
from .sip.register import Registrar
from .sip.tls import TlsSetupError
from .sip.tls_transport import TlsTransport
from .sip.transactions import SipTimers
from .sip.transport import Listener, bound_port
from .sip.uas import GatewayUAS
from .startup import StartupError, preflight, realtime_auth, start_metrics

__all__ = ["RELOADABLE", "ActiveCall", "Gateway", "StartupError"]

log = structlog.get_logger("gateway")

SHUTDOWN_GRACE_S = 5.0
END_OF_SERVICE = ("shutdown", "drain_timeout", "failure")  # Service.run's stop reasons


class Gateway:
    def __init__(self, cfg: GatewayConfig, *, sip_timers: SipTimers | None = None) -> None:
        self.cfg = cfg
        self.calls = Calls()  # by SIP Call-ID
        self._timers = sip_timers or SipTimers()
        self._uas: list[GatewayUAS] = []
        self._registrar: Registrar | None = None
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
        self._records = RecordWriter(
            cfg.records.calls_dir, lambda: self.metrics.write_failed("call_record")
        )
        self._admission = Admission(self.metrics, self._records)
        self.event_metrics = EventMetrics(self.metrics.registry)
        self.events: EventDelivery | None = None  # hooks.events, once started
        self.gc_pauses = GcPauses()
        self.full_collections = FullCollections()
        self.metrics.active_calls.set_function(lambda: len(self.calls))
        self._metrics_server: MetricsServer | None = None
        self._api_server: ApiServer | None = None
        self.console_hub = Hub()  # the live console's pages (none open: costs nothing)
        self.console_metrics = ConsoleMetrics(self.metrics.registry, self.console_hub)
        self._hook: DecisionHook | None = None  # hooks.call_incoming (a restart changes it)
        self.ready = False  # SIP listens and the Realtime side was checked
        self.failure: str | None = None  # a listener stopped: systemd restarts us (lifecycle)
        self.on_failure: Callable[[str], None] = lambda reason: None
        self.draining = False  # stopping: new calls and OPTIONS get 503
        self.on_calls_changed: Callable[[], None] = lambda: None
        self.dialer = Dialer(
            lambda: self.cfg,
            self.calls,
            lambda kind: next((u for u in self._uas if u.transport.name == kind.upper()), None),
            self._call_services,
            lambda: self.router,
            lambda: self.draining or not self.ready,
            lambda: self.on_calls_changed(),
        )

    async def start(self) -> None:
        self.gc_pauses.install()
        self.full_collections.install()
        rt = self.cfg.realtime
        if rt.embedded:
            self._embedded = EmbeddedRealtimeServer("127.0.0.1", 0, keep_events=0)
            await self._embedded.start()
            self._base_url = self._embedded.url
        self._auth = await realtime_auth(self.cfg)
        sip = self.cfg.sip
        users, register_password = sip_passwords(self.cfg)
        preflight(self.cfg, register_password)
        await self._start_servers()
        self._admission = Admission.from_config(self.cfg, users, self.metrics, self._records)
        for kind in sip.transports:
            await self._start_listener(kind)
        if sip.registration is not None and register_password is not None:
            self._start_registration(register_password)
        self.ready = True
        _log_ready(self.cfg, self.sip_port, self.tls_port)

    async def _start_listener(self, kind: str) -> None:
        sip = self.cfg.sip
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
            return
        # With port 0 (tests), every further transport shares the port the first one got.
        self.sip_port = bound_port(transport) or self.sip_port
        transport.local_addr = (transport.local_addr[0], self.sip_port)

    def _listener(self, kind: str) -> Listener:
        transport = build_listener(
            kind,
            self.cfg,
            self._door,
            sip_port=self.sip_port,
            tls_port=self.tls_port,
            busy=self.calls.carries,
        )
        name = transport.name
        transport.on_drop = lambda reason: self.metrics.sip_drop(name, reason)
        transport.on_dead = self._fail
        return transport

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
        uas.unavailable = self._unavailable
        self.calls.wire(uas)

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

    async def _start_servers(self) -> None:
        """Metrics, the decision hook, the control API and the events outbox (what an earlier
        run left in it is sent again); any failing stops the start."""
        try:
            self._metrics_server = await start_metrics(
                self.cfg.metrics,
                self.metrics,
                lambda: self.ready and not self.draining,
                self.debug_state,
            )
            self._hook = decision_hook(self.cfg)
            self._api_server = await start_api(
                self.cfg,
                self.calls,
                self.dialer.place,
                self.console_hub,
                self.console_metrics.listens.inc,
                self.metrics.api_blocks,
            )
            self.events = await start_events(self.cfg, self.event_metrics)
        except StartupError:
            await self.stop()
            raise

    async def stop(self, reason: str = "shutdown") -> None:
        """Hang up every call (BYE), then close listeners and the embedded agent."""
        self.ready = False
        if self._registrar is not None:
            await self._registrar.stop()
            self._registrar = None
        for call in list(self.calls.values()):
            self.calls.end(call.sip.call_id, reason)
        tasks = [c.task for c in self.calls.values() if c.task is not None]
        tasks += self._records.pending
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
        if self.events is not None:  # after the calls' last events; the rest stays on disk
            await self.events.close()
            self.events = None
        for uas in self._uas:
            await uas.stop()
        self._uas.clear()
        await self._auth.close()
        for server in (self._embedded, self._metrics_server, self._api_server, self._hook):
            if server is not None:
                await server.close()
        self._embedded = self._metrics_server = self._api_server = self._hook = None
        self.gc_pauses.remove()
        self.full_collections.remove()
        log.info("gateway.stopped")

    def debug_state(self, collect: bool = False) -> dict[str, Any]:
        """What the process holds now (/debug/state): flat in a soak run, or something leaks."""
        return debug_state(
            len(self.calls), self._ports.in_use, self.gc_pauses, self.full_collections, collect
        )

    def apply_config(
        self, new: GatewayConfig, tls: TlsContexts | None = None
    ) -> tuple[list[str], list[str]]:
        """A reloaded config: new calls get its agent, profiles and routes; calls in progress
        keep theirs. New TLS connections get the certificate read again (`tls`: read by
        `prepare_tls`, in a thread; read here when not given).

        Returns the sections applied and the changed sections that need a restart.
        """
        contexts = tls if tls is not None else self.prepare_tls(new)
        cfg, applied, needs_restart = apply_config(self.cfg, new, self._tls_listener(), contexts)
        self.cfg = cfg
        if any(name in RELOADABLE for name in applied):
            self.router = Router(cfg)  # a call in progress keeps the route it was given
        return applied, needs_restart

    def prepare_tls(self, new: GatewayConfig) -> TlsContexts:
        """The TLS contexts of a reloaded config, read from the files as they are now."""
        return prepare_tls(self._tls_listener(), new)

    def _tls_listener(self) -> TlsTransport | None:
        return next((u.transport for u in self._uas if isinstance(u.transport, TlsTransport)), None)

    # --- SIP events ---------------------------------------------------------------------------

    def _on_invite(self, uas: GatewayUAS, sip: IncomingCall) -> None:
        source = sip.source_addr[0]
        clog = log.bind(sip_call_id=sip.call_id, source=f"{source}:{sip.source_addr[1]}")
        if sip.call_id in self.calls:
            # The same Call-ID on another transport: a merged request (§8.2.2.2), never a
            # replacement of the call in progress.
            clog.warning("call.rejected", status=482, reason="Call-ID of a call in progress")
            reject(sip, 482, PHRASES[482])
            uas.forget(sip)
            return
        refusal = self._admission.refusal(sip, draining=self.draining, full=self._full())
        if refusal is not None:
            self._admission.refuse(uas, sip, refusal, clog)
            return
        call = ActiveCall(secrets.token_hex(6), sip, uas)
        self.calls[sip.call_id] = call
        call.task = asyncio.get_running_loop().create_task(
            run_call(call, self._call_services()), name=f"call-{call.id}"
        )
        self.on_calls_changed()

    def _call_services(self) -> CallServices:
        """What a new call takes from the gateway (its config and routes as they are now)."""
        return CallServices(
            cfg=self.cfg,
            router=self.router,
            ports=self._ports,
            media_door=self._media_door,
            base_url=self._base_url,
            dialect=self._dialect,
            auth=self._auth,
            metrics=self.metrics,
            records=self._records,
            local_ip=self._local_ip,
            calls=self.calls,
            full_collections=self.full_collections,
            on_calls_changed=lambda: self.on_calls_changed(),
            events=partial(_teed, self.console_hub, self.events),
            console=self.console_hub,
            hook=self._hook,
        )

    def _full(self) -> bool:
        return len(self.calls) >= self.cfg.sip.max_calls

    def _unavailable(self) -> bool:
        """OPTIONS get 503 too when an INVITE would: a PBX's health check sees it first."""
        return self.draining or self._full()

    def _local_ip(self, peer: str) -> str:
        """The address to put in Contact and SDP: configured, bound, or the route's source."""
        sip = self.cfg.sip
        if sip.advertise_address:
            return sip.advertise_address
        if sip.bind not in ("0.0.0.0", "::"):
            return sip.bind
        return local_ip_towards(peer)


def _teed(hub: Hub, events: EventDelivery | None, call_id: str) -> Emit:
    """A call's emitter: hooks.events when configured, and the console's open pages."""
    return hub.tee(call_id, events.emitter(call_id) if events is not None else no_events)


def _log_ready(cfg: GatewayConfig, sip_port: int, tls_port: int | None) -> None:
    """The gateway.ready line: where it listens, what it talks to, how it runs."""
    sip, rt, metrics = cfg.sip, cfg.realtime, cfg.metrics
    log.info(
        "gateway.ready",
        sip=f"{sip.bind}:{sip_port}",
        tls=f"{sip.bind}:{tls_port}" if "tls" in sip.transports else None,
        transports=sip.transports,
        realtime="embedded:echo" if rt.embedded else rt.url,
        deployment=None if rt.embedded else rt.deployment,
        metrics=f"{metrics.bind}:{metrics.port}" if metrics.enabled else None,
        media_kernels="c" if native.dsp is not None else "numpy",  # _dsp.c built or not
        version=__version__,
    )
