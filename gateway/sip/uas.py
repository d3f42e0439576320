"""aiosipua's UAS with the conformance fixes the gateway needs (ARCHITECTURE.md): the
INVITE server side, on top of the in-dialog layer (in_dialog.py).

aiosipua parses, builds dialogs and dispatches by method; this subclass adds
what a PBX relies on and aiosipua leaves out:

- INVITE server transactions (transactions.py): a retransmitted INVITE is
  answered with the last response and goes no further; final responses are
  retransmitted until their ACK (timer G / §13.3.1.4) or timer H, and a 2xx
  that is never ACKed ends the call with a BYE (`on_ack_timeout`).
- The ACK of a 2xx reaches the application (`on_ack`): it carries the SDP
  answer when the INVITE had no offer (late offer, RFC 3261 §13.2.1).
- CANCEL answers 200, the INVITE 487 (retransmitted until ACK), then
  `on_cancelled`; re-INVITEs reach `on_reinvite` with their offer or None.
- Requests that are not fit to process get the answer RFC 3261 §8.2 asks for
  (400, 416, 481, 482) where their Via allows a reply; OPTIONS says 503 while
  the gateway cannot take calls.
- A new INVITE creates its call here, not in aiosipua's transaction layer (which
  keeps every ringing INVITE for 300 s and scans them all on each new one).
- Requests the transport refuses (the source ACL, a bad Via) get their answer
  (`refuse`) sent once to the packet's source, outside any transaction.
- Session timers are negotiated on the INVITE and on every re-INVITE (422 with Min-SE
  below ours) and carried in their 2xx (answer.py); the timer itself is in_dialog.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from aiosipua import IncomingCall, SipRequest, SipResponse
from aiosipua.dialog import DialogState, create_dialog_from_request, dialog_matches
from aiosipua.sdp import SdpMessage

from .answer import GatewayCall, reject, respond
from .in_dialog import InDialogUAS
from .messages import Unacceptable, error_response, read_offer
from .retransmit import resend
from .session_timer import TimerPolicy
from .transactions import InviteTransaction, InviteTransactions, SipTimers, TxState
from .transport import Listener
from .validate import request_problem

log = structlog.get_logger("gateway.sip")

OPTIONS_RETRY_AFTER_S = 5


class GatewayUAS(InDialogUAS):
    """The gateway's UAS: INVITE server transactions over the in-dialog layer."""

    def __init__(
        self,
        transport: Listener,
        *,
        user_agent: str,
        timers: SipTimers | None = None,
        session_timers: TimerPolicy | None = None,
    ) -> None:
        super().__init__(
            transport, user_agent=user_agent, timers=timers, session_timers=session_timers
        )
        self.invites = InviteTransactions()
        self.on_ack: Callable[[IncomingCall, SipRequest], Any] | None = None
        self.on_cancelled: Callable[[IncomingCall], Any] | None = None
        # Set by the daemon: True while it is draining or full, so OPTIONS get 503 like an INVITE.
        self.unavailable: Callable[[], bool] = lambda: False
        self._handlers["ACK"] = self._handle_ack
        self._handlers["CANCEL"] = self._handle_cancel
        transport.on_reply = self._on_reply
        transport.on_refused = self.refuse_message

    async def stop(self) -> None:
        for txn in self.invites.all():
            _cancel(txn.timer)
        await super().stop()

    # --- requests in ----------------------------------------------------------------------

    def _handle_request(self, request: SipRequest, addr: tuple[str, int]) -> None:
        problem = request_problem(request)
        if problem is not None:
            status, reason, headers = problem
            log.info(
                "sip.bad_request",
                method=request.method[:20],
                source=f"{addr[0]}:{addr[1]}",
                status=status,
                reason=reason,
            )
            # No reply without a Via to route it, and never to an ACK (§17.2.3).
            if request.headers.get("via") and request.method != "ACK":
                self._send_error(request, status, reason, extra_headers=headers or None)
            return
        super()._handle_request(request, addr)

    def _handle_invite(self, request: SipRequest, addr: tuple[str, int]) -> None:
        txn = self.invites.match(request)
        if txn is not None:
            # §17.2.1: a retransmission gets the last response again, and nothing else.
            log.info(
                "sip.invite_retransmission",
                sip_call_id=txn.call_id,
                resent=txn.response.status_code if txn.response else None,
            )
            if txn.response is not None and txn.state is not TxState.CONFIRMED:
                self.transport.resend(txn.response)
            return
        call_id = request.call_id or ""
        existing = self._calls.get(call_id)
        if existing is not None and existing.dialog.state is DialogState.CONFIRMED:
            self._handle_reinvite(existing, request)
            return
        to = request.to_addr
        if to is not None and to.tag:
            self._send_error(request, 481, "Call/Transaction Does Not Exist")  # §12.2.2
            return
        if existing is not None:
            self._send_error(request, 482, "Loop Detected")  # §8.2.2.2: same call, new branch
            return
        if self.invites.full:
            # Stateless: a flood of INVITEs must not grow the table without bound.
            self.refuse(request, addr, 503, "Service Unavailable", {"Retry-After": "5"})
            return
        self.invites.create(request)
        timer = self._negotiate(request)
        if timer is False:
            return
        offer = self._offer_or_reply(request)
        if offer is False:
            return
        dialog = create_dialog_from_request(request)
        # RFC 3261 §12.1.1: a UAS takes the Record-Route URIs in order, nearest proxy first
        # (aiosipua reverses them, as a UAC would).
        dialog.route_set = list(request.headers.get("record-route"))
        call = GatewayCall(
            dialog=dialog,
            invite=request,
            sdp_offer=offer,
            transport=self.transport,
            source_addr=addr,
            user_agent=self.user_agent,
            advertised_addr=self.advertised_addr,
            retransmit_2xx=False,
            offered_timer=timer,
            timers_supported=self.session_policy is not None,
            on_refreshed=self.arm_session_timer,
        )
        self._calls[call_id] = call
        call.trying()
        if self.on_invite is not None:
            self.on_invite(call)

    def _offer_or_reply(self, request: SipRequest) -> SdpMessage | bool | None:
        """The offer (None without one); False when the body was refused (answer sent)."""
        try:
            return read_offer(request)
        except Unacceptable as exc:
            self._send_error(request, exc.status, exc.reason, extra_headers=exc.headers)
            return False

    def _handle_reinvite(self, call: IncomingCall, request: SipRequest) -> None:
        if not self._validate_in_dialog(call.dialog, request):
            return
        self.invites.create(request)
        if self.refreshes.invite_pending(call.call_id):
            # RFC 3261 §14.2: our refresh re-INVITE is still open (glare); it retries later.
            self._send_error(request, 491, "Request Pending")
            return
        timer = self._negotiate(request)
        if timer is False:
            return
        offer = self._offer_or_reply(request)
        if offer is False:
            return
        call.invite = request
        call.sdp_offer = offer
        if isinstance(call, GatewayCall):
            call.offered_timer = timer  # in force, and the timer re-armed, once answered 2xx
        if self.on_reinvite is not None:
            self.on_reinvite(call)
        else:
            respond(call, 488, "Not Acceptable Here")

    def _handle_ack(self, request: SipRequest, addr: tuple[str, int]) -> None:
        txn = self.invites.match_ack(request)
        if txn is None or txn.state not in (TxState.COMPLETED, TxState.ACCEPTED):
            return  # a stray or repeated ACK: never answered, never passed on
        accepted = txn.state is TxState.ACCEPTED
        _cancel(txn.timer)
        txn.state = TxState.CONFIRMED
        # Timer I (T4 on UDP), or RFC 6026's timer L after a 2xx: absorb what is in flight.
        linger = self.timers.h if accepted else (0.0 if self.transport.reliable else self.timers.t4)
        txn.timer = asyncio.get_running_loop().call_later(linger, self.invites.remove, txn)
        call = self._calls.get(txn.call_id)
        if accepted and call is not None and dialog_matches(call.dialog, request):
            self._start_session_timer(call)
            if self.on_ack is not None:
                self.on_ack(call, request)

    def _handle_cancel(self, request: SipRequest, addr: tuple[str, int]) -> None:
        txn = self.invites.match(request)  # same branch as the INVITE (§9.1)
        if txn is None:
            self._send_error(request, 481, "Call/Transaction Does Not Exist")
            return
        call = self._calls.get(txn.call_id)
        if call is None or txn.final:
            # §9.2: too late to cancel; the CANCEL still gets its 200.
            self._send_error(request, 200, "OK")
            return
        self._reply(call.dialog.create_response(request, 200, "OK"))
        reject(call, 487, "Request Terminated")
        self._calls.pop(call.call_id, None)
        if self.on_cancelled is not None:
            self.on_cancelled(call)

    def _handle_options(self, request: SipRequest, addr: tuple[str, int]) -> None:
        if self.unavailable():
            # A PBX's OPTIONS health check (Asterisk qualify, Kamailio dispatcher probing)
            # takes a full or stopping gateway out of rotation before it sends it a call.
            self._send_error(
                request,
                503,
                "Service Unavailable",
                extra_headers={"Retry-After": str(OPTIONS_RETRY_AFTER_S)},
            )
        else:
            answer = error_response(request, 200, "OK", self.capabilities(), self.user_agent)
            self._reply(answer)

    def capabilities(self) -> dict[str, str]:
        """What an OPTIONS learns (RFC 3261 §11.2): the methods, the body we take, and the
        extensions (timer only where session timers are on)."""
        headers = {"Allow": ", ".join(self._handlers), "Accept": "application/sdp"}
        if self.session_policy is not None:
            headers["Supported"] = "timer"
        return headers

    # --- INVITE responses out: retransmission until ACK ------------------------------------

    def _on_reply(self, response: SipResponse) -> None:
        # Raw CSeq: a 400 echoes whatever unreadable CSeq its request had.
        if (response.get_header("cseq") or "").split()[-1:] != ["INVITE"]:
            return
        txn = self.invites.match(response)
        if txn is not None and txn.record(response):
            loop = asyncio.get_running_loop()
            txn.timer = loop.create_task(self._await_ack(txn, loop.time()))

    async def _await_ack(self, txn: InviteTransaction, sent_at: float) -> None:
        response = txn.response
        assert response is not None
        if not self.transport.reliable:
            # Timer G counts from the first send, not from when this task got to run.
            await resend(self.timers, lambda: self.transport.resend(response), sent_at)
        else:
            await asyncio.sleep(self.timers.h)
        self.invites.remove(txn)
        txn.timer = None
        log.warning(
            "sip.ack_timeout",
            sip_call_id=txn.call_id,
            status=response.status_code,
            after_s=self.timers.h,
        )
        call = self._calls.get(txn.call_id)
        if txn.state is TxState.ACCEPTED and call is not None:
            # §13.3.1.4: no ACK for the 2xx; the session SHOULD end.
            if self.on_ack_timeout is not None:
                self.on_ack_timeout(call)

    # --- calls we end -----------------------------------------------------------------------

    def forget(self, call: IncomingCall) -> None:
        """Drop a call we ended ourselves (aiosipua only forgets calls the peer ended).

        Its rejected INVITE stays in the table (retransmissions are still absorbed, the
        error resent until ACK); a 2xx still waiting for its ACK is not resent any more.
        """
        for txn in self.invites.of_call(call.call_id):
            if txn.state is TxState.ACCEPTED:
                _cancel(txn.timer)
                self.invites.remove(txn)
        super().forget(call)

    def refuse_call(self, call: IncomingCall, status: int, reason: str) -> None:
        """Refuse a new call statelessly (a blocked source): the answer is sent once and
        never resent, and its transaction is forgotten at once."""
        for txn in self.invites.of_call(call.call_id):
            if not txn.final:
                _cancel(txn.timer)
                self.invites.remove(txn)
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        call.dialog.terminate()
        self.refuse(call.invite, call.source_addr, status, reason)


def _cancel(timer: Any) -> None:
    if timer is not None:
        timer.cancel()
