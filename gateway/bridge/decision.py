"""The call's side of the decision webhook (hooks.call_incoming): what it is asked about this
call, and the profile and agent its answer gives the call."""

from __future__ import annotations

from typing import Any, Protocol

from aiosipua import IncomingCall

from ..call_record import CallRecord
from ..config import GatewayConfig
from ..config.agent import PREVIEW_VOICES, VOICES
from ..hooks.decide import DecisionHook, Declined, decide
from ..hooks.incoming import Accept, request_body, rules_for
from ..metrics import Metrics
from ..routing import CallInfo, Router, Selection
from ..sip.uas import reject


class _Call(Protocol):  # setup.ActiveCall, without importing it (setup imports this module)
    id: str
    sip: IncomingCall
    uas: Any


class _Services(Protocol):  # setup.CallServices
    cfg: GatewayConfig
    metrics: Metrics
    hook: DecisionHook | None


async def ask_hook(
    call: _Call, services: _Services, info: CallInfo, record: CallRecord, clog: Any
) -> Accept | None:
    """The decision webhook's accept for this call (its metadata into the record); None
    without a hook, or when routes decide."""
    hook = services.hook
    if hook is None:
        return None
    transport = call.uas.transport.name
    decision = await ask(
        hook, call.id, call.sip, transport, info, services.cfg, services.metrics, clog
    )
    if decision is not None:
        record.metadata = dict(decision.metadata)
    return decision


def declined(sip: IncomingCall, exc: Declined, record: CallRecord, clog: Any) -> str:
    """Answer a call the hook turned away (its record takes the status and metadata); the
    call's end reason."""
    record.sip_status, record.metadata = exc.status, exc.metadata
    clog.info("call.rejected", status=exc.status, reason=exc.reason)
    reject(sip, exc.status, exc.phrase, headers=exc.headers)
    return exc.reason


async def ask(
    hook: DecisionHook,
    call_id: str,
    sip: IncomingCall,
    transport: str,
    info: CallInfo,
    cfg: GatewayConfig,
    metrics: Metrics,
    clog: Any,
) -> Accept | None:
    """The hook's accept (None: routes decide), asked while the caller has its 100 Trying
    (sent when the INVITE arrived) and, with ringing: true, a 180 Ringing. Raises
    hooks.decide.Declined for a reject, a redirect or a failure with on_failure: reject."""
    if hook.cfg.ringing:
        sip.ringing()
    facts = {
        "caller": info.caller,
        "caller_name": info.caller_name,
        "dialed": info.dialed,
        "to": info.to,
        "source": f"{sip.source_addr[0]}:{sip.source_addr[1]}",
        "transport": transport.lower(),
    }
    voices = PREVIEW_VOICES if cfg.realtime.protocol == "preview" else VOICES
    body = request_body(call_id, facts, info.headers)
    return await decide(hook, body, rules_for(cfg.profiles, voices), clog, metrics.hook_asked)


def select(router: Router, info: CallInfo, decision: Accept | None) -> Selection:
    """The call's profile and agent: routes, or the decision webhook's answer."""
    if decision is None:
        return router.select(info)
    return router.select(
        info,
        profile=decision.profile,
        overrides=decision.overrides,
        variables=decision.variables,
        metadata=decision.metadata,
    )
