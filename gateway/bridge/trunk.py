"""The way to a trunk (sip.outbound) and a call placed there, before anything is sent:
shared by outbound calls (outbound.py) and a warm transfer's second leg (target_leg.py)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiosipua import SipRequest
from aiosipua.dialog import Dialog, DialogState
from aiosipua.utils import generate_tag

from ..config import SipOutboundConfig
from ..refusals import SetupFailed
from ..sip.addresses import ip_literal
from ..sip.invite_client import PlacedCall

RESOLVE_TIMEOUT_S = 5.0


class NotAnswered(SetupFailed):
    """The callee's side never answered: busy, no_answer, rejected or unreachable."""

    def __init__(self, reason: str, status: int | None, detail: str) -> None:
        Exception.__init__(self, detail)
        self.reason, self.status, self.detail = reason, status, detail  # type: ignore[assignment]
        self.retry_after, self.level, self.fields = None, "warning", {}


async def reach_trunk(outbound: SipOutboundConfig, transport: Any) -> tuple[str, int]:
    """The trunk's address, looked up without blocking; over TCP/TLS a connection of the
    listener's own to it first. NotAnswered (unreachable) when neither works."""
    host, port = outbound.trunk_address
    ip = ip_literal(host)
    if ip is None:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                kind = socket.SOCK_DGRAM if outbound.transport == "udp" else socket.SOCK_STREAM
                family = socket.AF_INET6 if ":" in transport.local_addr[0] else socket.AF_INET
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, family=family, type=kind
                )
        except (OSError, TimeoutError) as exc:
            why = getattr(exc, "strerror", None) or "timed out"
            raise NotAnswered("unreachable", None, f"cannot resolve {host}: {why}") from None
        if not infos:
            raise NotAnswered("unreachable", None, f"{host} has no address of our family")
        ip = str(infos[0][4][0])
    opener = getattr(transport, "open", None)
    if outbound.transport != "udp" and opener is not None:
        problem = await opener((ip, port), host)
        if problem is not None:
            raise NotAnswered("unreachable", None, f"cannot connect to {host}: {problem}")
    return ip, port


def placed_call(
    call_id: str, from_uri: str, to_uri: str, trunk: tuple[str, int], uas: Any
) -> PlacedCall:
    """The outbound call's dialog, before anything is sent (its Call-ID keys the registry)."""
    dialog = Dialog(
        call_id=call_id,
        local_tag=generate_tag(),
        local_uri=from_uri,
        remote_uri=to_uri,
        remote_target=to_uri,
        state=DialogState.EARLY,
    )
    return PlacedCall(
        dialog=dialog,
        invite=SipRequest(method="INVITE", uri=to_uri),
        transport=uas.transport,
        source_addr=trunk,
        user_agent=uas.user_agent,
    )
