"""aiosipua's UAS with the conformance fixes the gateway needs.

Measured gaps closed here (ARCHITECTURE.md): a retransmitted INVITE must not
become a second call, a malformed SDP body must get 400 instead of silence, and
the gateway has to be able to forget a call it hung up itself.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from aiosipua import IncomingCall, SipRequest, SipUAS, parse_sdp
from aiosipua.dialog import DialogState

log = structlog.get_logger("gateway.sip")


class GatewayUAS(SipUAS):
    # Set by the daemon: True while it is draining or full, so OPTIONS get 503 like an INVITE.
    unavailable: Callable[[], bool] = staticmethod(lambda: False)

    def _handle_options(self, request: SipRequest, addr: tuple[str, int]) -> None:
        if self.unavailable():
            # A PBX's OPTIONS health check (Asterisk qualify, Kamailio dispatcher probing)
            # takes a stopping gateway out of rotation before it sends it a call.
            self._send_error(
                request, 503, "Service Unavailable", extra_headers={"Retry-After": "5"}
            )
            return
        super()._handle_options(request, addr)

    def _handle_invite(self, request: SipRequest, addr: tuple[str, int]) -> None:
        call_id = request.call_id or ""
        existing = self._calls.get(call_id)
        if existing is not None and _same_transaction(existing.invite, request):
            # RFC 3261 §17.2.1: a retransmission is absorbed by the server transaction.
            if existing.dialog.state == DialogState.EARLY:
                existing.trying()
            return
        if request.body and (request.content_type or "").lower() == "application/sdp":
            try:
                parse_sdp(request.text)
            except (ValueError, IndexError) as exc:
                log.warning("sip.bad_sdp", source=f"{addr[0]}:{addr[1]}", error=str(exc))
                self._send_error(request, 400, "Malformed SDP")
                return
        super()._handle_invite(request, addr)

    def forget(self, call: IncomingCall) -> None:
        """Drop a call we ended ourselves (aiosipua only forgets calls the peer ended)."""
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        self._remove_invite_transaction(call.invite)
        call._stop_retransmissions()

def _same_transaction(a: SipRequest, b: SipRequest) -> bool:
    via_a, via_b = a.via, b.via
    if not via_a or not via_b:
        return False
    cseq_a, cseq_b = a.cseq, b.cseq
    return (
        via_a[0].branch == via_b[0].branch
        and cseq_a is not None
        and cseq_b is not None
        and cseq_a.seq == cseq_b.seq
    )


def reject(call: IncomingCall, status: int, reason: str, *, retry_after: int | None = None) -> None:
    """A final error response, with Retry-After where a PBX should try again later."""
    extra = {"Retry-After": str(retry_after)} if retry_after is not None else None
    call._send_response(status, reason, extra_headers=extra)
    call.dialog.terminate()
