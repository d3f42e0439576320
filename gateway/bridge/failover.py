"""realtime.failover: a caller the Realtime side cannot take, or loses mid-call and cannot
get back, goes to a human (302 before the answer, REFER after) instead of a 503 or a BYE."""

from __future__ import annotations

from typing import Any, Protocol

from aiosipua import IncomingCall

from ..config import GatewayConfig
from ..refusals import FINAL_STATUS, PHRASES, SetupFailed
from ..sip.answer import reject
from ..sip.uas import GatewayUAS


class InCall(Protocol):
    """What failover needs of a call in progress (bridge.setup.ActiveCall)."""

    sip: IncomingCall
    uas: GatewayUAS


FAILOVER_WAIT_S = 15.0  # for the far end of a failover transfer to answer


def before_answer(cfg: GatewayConfig, sip: IncomingCall, exc: SetupFailed, log: Any) -> bool:
    """The Realtime side cannot take the call: a 302 to the failover target (True), or
    nothing to do (False: the call gets its usual refusal)."""
    failover = cfg.realtime.failover
    if failover is None or exc.reason != "realtime_unavailable":
        return False
    log.warning("call.failover", when="before_answer", target=failover.target, reason=exc.detail)
    status = FINAL_STATUS["failover_redirect"]
    reject(sip, status, PHRASES[status], headers={"Contact": f"<{failover.target}>"})
    return True


async def after_answer(cfg: GatewayConfig, call: InCall, reason: str, log: Any) -> str:
    """The Realtime session was lost and not restored: REFER the caller to the failover
    target rather than hang up on them. Returns the call's end reason."""
    failover = cfg.realtime.failover
    if failover is None or not reason.startswith("realtime_closed"):
        return reason
    log.warning("call.failover", when="after_answer", target=failover.target, reason=reason)
    ok, detail = await call.uas.transfer(call.sip, failover.target, FAILOVER_WAIT_S)
    log.info("call.transfer", target=failover.target, ok=ok, detail=detail, by="failover")
    return "failover_transferred" if ok else reason
