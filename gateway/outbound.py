"""Placing outbound calls (POST /v1/calls, ``python -m gateway call``): the request checked by
the toll-fraud guard, the call entered in the registry and started as a task of its own.

The answer is immediate (the call id); what becomes of the call comes as events
(``call.started``, then ``call.answered`` .. ``call.ended``, or ``call.failed``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from .bridge.outbound import OutboundSetup, Placement, placed_call
from .bridge.setup import ActiveCall, CallServices
from .calls import Calls
from .config import GatewayConfig, SipOutboundConfig, outbound_password
from .outbound_guard import OutboundGuard, Refused
from .routing import CallInfo, Router
from .sip.uas import GatewayUAS

log = structlog.get_logger("gateway")


@dataclass(frozen=True)
class CallRequest:
    """What is asked for: the fields of POST /v1/calls."""

    to: str
    caller_id: str | None = None
    profile: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    ring_timeout_s: float | None = None
    amd: str = "off"


class OutboundRefused(Exception):
    """A call that is not placed: the HTTP status, reason word and detail for the client."""

    def __init__(self, refused: Refused, retry_after: int | None = None) -> None:
        super().__init__(refused.detail)
        self.refused = refused
        self.retry_after = retry_after


class Dialer:
    """Places the gateway's outbound calls through the listener of sip.outbound.transport."""

    def __init__(
        self,
        cfg: Callable[[], GatewayConfig],
        calls: Calls,
        uas: Callable[[str], GatewayUAS | None],
        services: Callable[[], CallServices],
        router: Callable[[], Router],
        draining: Callable[[], bool],
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        """What the gateway lends: its config, registry, listeners, call services and
        routes as they are now, whether it takes calls, and whom to tell of a new one."""
        self._cfg = cfg
        self._calls = calls
        self._uas = uas
        self._services = services
        self._router = router
        self._draining = draining
        self._changed = changed
        self._guard: OutboundGuard | None = None

    def place(self, request: CallRequest) -> tuple[str, str]:
        """Start the call; its id and SIP Call-ID at once. Raises OutboundRefused."""
        cfg = self._cfg()
        outbound = cfg.sip.outbound
        if outbound is None:
            raise OutboundRefused(
                Refused(409, "not_configured", "outbound calls need sip.outbound in the config")
            )
        if self._guard is None or self._guard.cfg is not outbound:
            guard = OutboundGuard(outbound)  # a reload: new patterns, the counts go on
            if self._guard is not None:
                guard.carry(self._guard)
            self._guard = guard
        guard, now = self._guard, time.monotonic()
        caller_id = request.caller_id or outbound.default_caller_id or ""
        refused = self._refusal(cfg, request, caller_id, now)
        if refused is not None:
            retry = guard.retry_after(now) if refused.reason == "max_per_minute" else None
            log.warning(
                "call.outbound_refused", reason=refused.reason, detail=refused.detail, to=request.to
            )
            raise OutboundRefused(refused, retry)
        call = self._new_call(outbound, request.to, caller_id)
        placement = self._placement(cfg, request, caller_id)
        self._calls[call.sip.call_id] = call
        guard.started(now)
        call.task = asyncio.get_running_loop().create_task(
            self._run(call, placement), name=f"call-{call.id}"
        )
        log.info("call.outbound", call_id=call.id, to=request.to, profile=placement.route.profile)
        self._changed()
        return call.id, call.sip.call_id

    def _new_call(self, outbound: SipOutboundConfig, to: str, caller_id: str) -> ActiveCall:
        """The call in the registry's shape: its dialog, before anything is sent."""
        uas = self._uas(outbound.transport)
        assert uas is not None  # the config makes sure the transport listens
        domain = outbound.domain
        return ActiveCall(
            secrets.token_hex(6),
            placed_call(
                f"{secrets.token_hex(16)}@{domain}",
                f"sip:{caller_id}@{domain}",
                f"sip:{to}@{domain}",
                outbound.trunk_address,
                uas,
            ),
            uas,
        )

    def _placement(self, cfg: GatewayConfig, request: CallRequest, caller_id: str) -> Placement:
        """The call's profile and agent (the agent speaks first), and what it was asked."""
        outbound = cfg.sip.outbound
        assert outbound is not None
        route = self._router().select(
            CallInfo(dialed=request.to, to=request.to, caller=caller_id),
            profile=request.profile,
            variables=request.variables,
            metadata=request.metadata,
        )
        if not route.agent.greeting:  # the agent speaks first when the callee answers
            agent = route.agent.model_copy(update={"greeting": OUTBOUND_GREETING})
            route = replace(route, agent=agent)
        return Placement(
            request.to,
            caller_id,
            replace(route, amd=request.amd),
            request.ring_timeout_s or outbound.ring_timeout_s,
            outbound_password(cfg),
            dict(request.metadata),
        )

    def _refusal(
        self, cfg: GatewayConfig, request: CallRequest, caller_id: str, now: float
    ) -> Refused | None:
        if self._draining():
            return Refused(503, "draining", "the gateway is stopping")
        if len(self._calls) >= cfg.sip.max_calls:
            return Refused(429, "max_calls", "sip.max_calls calls are in progress")
        if request.profile not in (None, "default") and request.profile not in cfg.profiles:
            return Refused(400, "unknown_profile", "profile: no such profile in the config")
        if not caller_id:
            return Refused(
                400, "bad_caller_id", "from: required (no sip.outbound.default_caller_id)"
            )
        assert self._guard is not None
        return self._guard.check(request.to, caller_id, now)

    async def _run(self, call: ActiveCall, placement: Placement) -> None:
        services = self._services()
        setup = OutboundSetup(call, services, placement)
        try:
            await setup.run()
        except Exception:
            log.exception("call.teardown_failed", call_id=call.id, sip_call_id=call.sip.call_id)
        finally:
            if self._guard is not None:
                self._guard.ended()


OUTBOUND_GREETING = (
    "The person you called has just answered the phone. Greet them briefly and say why you "
    "are calling."
)
