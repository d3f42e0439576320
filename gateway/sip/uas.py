"""aiosipua's UAS with the conformance fixes the gateway needs (ARCHITECTURE.md).

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
  the gateway cannot take calls; our BYE is retransmitted until answered.
- A new INVITE creates its call here, not in aiosipua's transaction layer (which
  keeps every ringing INVITE for 300 s and scans them all on each new one).
- Requests the transport refuses (the source ACL, a bad Via) get their answer
  (`refuse`) sent once to the packet's source, outside any transaction.
- Session timers (RFC 4028, session_timer.py): negotiated on the INVITE and on every
  re-INVITE or UPDATE (422 with Min-SE below ours), carried in their 2xx; a 2xx to a refresh
  re-arms the timer; when we refresh, refresh.py sends the UPDATE or re-INVITE; when the
  caller's refreshes stop, `on_session_expired`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from aiosipua import IncomingCall, SipRequest, SipResponse, SipUAS, parse_sdp
from aiosipua.dialog import DialogState, create_dialog_from_request, dialog_matches
from aiosipua.sdp import SdpMessage, serialize_sdp
from aiosipua.session_timer import SessionTimer
from aiosipua.utils import format_addr, generate_tag

from .refresh import Refreshes
from .session_timer import IntervalTooSmall, Negotiated, TimerPolicy, negotiate
from .transactions import InviteTransaction, InviteTransactions, SipTimers, TxState
from .transport import Listener, Source, TlsTransport
from .validate import request_problem, retarget

log = structlog.get_logger("gateway.sip")

OPTIONS_RETRY_AFTER_S = 5


@dataclass
class GatewayCall(IncomingCall):
    """An IncomingCall whose 2xx to an INVITE carries the negotiated session timer (RFC 4028
    §9), and whose 2xx to a re-INVITE re-arms it (the refresh took place)."""

    # The negotiation for the INVITE being answered, and the one in force.
    offered_timer: Negotiated | None = field(default=None, repr=False)
    timer: Negotiated | None = field(default=None, repr=False)
    timers_supported: bool = field(default=False, repr=False)
    on_refreshed: Callable[[GatewayCall], Any] | None = field(default=None, repr=False)

    def _send_response(
        self,
        status_code: int,
        reason: str,
        *,
        body: str = "",
        content_type: str = "",
        extra_headers: dict[str, str] | None = None,
    ) -> SipResponse | None:
        success = 200 <= status_code < 300 and self.invite.method == "INVITE"
        refresh = success and self.dialog.state is DialogState.CONFIRMED
        record_route = self.invite.headers.get("record-route")
        if 100 < status_code < 300 and record_route:
            # RFC 3261 §12.1.1: the caller builds its route set from these, so its ACK and
            # BYE come back through the proxies that record-routed (Kamailio), not around them.
            extra_headers = {**(extra_headers or {}), "Record-Route": ", ".join(record_route)}
        if success:
            extra_headers = dict(extra_headers or {})
            if self.timers_supported:
                extra_headers["Supported"] = "timer"
            if self.offered_timer is not None:
                extra_headers.update(self.offered_timer.headers())
        response = super()._send_response(
            status_code, reason, body=body, content_type=content_type, extra_headers=extra_headers
        )
        if success:
            self.timer = self.offered_timer
        if refresh:
            retarget(self.dialog, self.invite)  # a re-INVITE's Contact, once accepted (RFC 6141)
        if refresh and self.on_refreshed is not None:
            self.on_refreshed(self)
        return response


class GatewayUAS(SipUAS):
    transport: Listener

    def __init__(
        self,
        transport: Listener,
        *,
        user_agent: str,
        timers: SipTimers | None = None,
        session_timers: TimerPolicy | None = None,
    ) -> None:
        super().__init__(transport, user_agent=user_agent or None, retransmit_2xx=False)
        self.timers = timers or SipTimers()
        self.invites = InviteTransactions()
        self.on_ack: Callable[[IncomingCall, SipRequest], Any] | None = None
        self.on_cancelled: Callable[[IncomingCall], Any] | None = None
        # Set by the daemon: True while it is draining or full, so OPTIONS get 503 like an INVITE.
        self.unavailable: Callable[[], bool] = lambda: False
        self._byes: dict[str, asyncio.Task[None]] = {}  # our BYEs by branch, until answered
        # Our REFERs by branch until their final response; transfer progress by Call-ID.
        self._refers: dict[str, asyncio.Future[SipResponse]] = {}
        self._transfers: dict[str, asyncio.Queue[tuple[int, str]]] = {}
        self.on_transfer_progress = self._transfer_progress
        self._handlers["ACK"] = self._handle_ack
        self._handlers["CANCEL"] = self._handle_cancel
        self._handlers["INFO"] = self._handle_info
        self.on_key: Callable[[IncomingCall, str], Any] | None = None
        # Session timers (None: off): the app ends an expired call, gives the SDP a refresh
        # re-INVITE repeats, and takes the answer to it.
        self.session_policy = session_timers
        self.on_session_expired: Callable[[IncomingCall], Any] | None = None
        self.refreshes = Refreshes(self)
        self._handlers["UPDATE"] = self._handle_update
        transport.on_reply = self._on_reply
        transport.on_refused = self.refuse_message

    async def stop(self) -> None:
        for txn in self.invites.all():
            _cancel(txn.timer)
        for task in self._byes.values():
            task.cancel()
        self._byes.clear()
        self.refreshes.close()
        await super().stop()

    # --- requests in ----------------------------------------------------------------------

    def _on_message(self, msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        if isinstance(msg, SipResponse):
            vias = msg.via
            branch = (vias[0].branch or "") if vias else ""
            task = self._byes.pop(branch, None)
            if task is not None:
                task.cancel()
                return
            if self.refreshes.on_response(msg, branch):
                return
            refer = self._refers.get(branch)
            if refer is not None:
                if msg.status_code >= 200 and not refer.done():
                    refer.set_result(msg)
                return
        super()._on_message(msg, addr)

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
            on_refreshed=self._arm_session_timer,
        )
        self._calls[call_id] = call
        call.trying()
        if self.on_invite is not None:
            self.on_invite(call)

    def _offer_or_reply(self, request: SipRequest) -> SdpMessage | bool | None:
        """The offer (None without one); False when the body was refused (answer sent)."""
        try:
            return _offer(request)
        except _Unacceptable as exc:
            self._send_error(request, exc.status, exc.reason, extra_headers=exc.headers)
            return False

    def _negotiate(self, request: SipRequest) -> Negotiated | bool | None:
        """The session timer a request asks for (None: none); False when it asked for too
        short an interval and got its 422 (RFC 4028 §9)."""
        if self.session_policy is None:
            return None
        try:
            return negotiate(request, self.session_policy)
        except IntervalTooSmall as exc:
            log.info(
                "sip.session_interval_too_small",
                sip_call_id=request.call_id,
                method=request.method,
                asked_s=exc.asked,
                min_se_s=exc.min_se,
            )
            self._send_error(
                request, 422, "Session Interval Too Small",
                extra_headers={"Min-SE": str(exc.min_se)},
            )  # fmt: skip
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

    def _handle_update(self, request: SipRequest, addr: tuple[str, int]) -> None:
        """In-dialog UPDATE (RFC 3311): a bodyless one is a session refresh (RFC 4028), answered
        200 with the negotiated Session-Expires and the timer re-armed; one with an offer
        gets 488 (the gateway renegotiates media by re-INVITE only)."""
        call = self._calls.get(request.call_id or "")
        if call is None or call.dialog.state is DialogState.TERMINATED:
            self._send_error(request, 481, "Call/Transaction Does Not Exist")
            return
        if not self._validate_in_dialog(call.dialog, request):
            return
        if request.body:
            self._reply(call.dialog.create_response(request, 488, "Not Acceptable Here"))
            return
        timer = self._negotiate(request)
        if timer is False:
            return
        retarget(call.dialog, request)
        contact = f"<sip:{format_addr(*call._signaling_addr())}>"
        response = call.dialog.create_response(request, 200, "OK", contact=contact)
        headers = timer.headers() if isinstance(timer, Negotiated) else {}
        if self.session_policy is not None:
            headers["Supported"] = "timer"
        for name, value in headers.items():
            response.headers.set_single(name, value)
        self._reply(response)
        if isinstance(call, GatewayCall):
            call.timer = call.offered_timer = timer if isinstance(timer, Negotiated) else None
            self._arm_session_timer(call)

    # --- session timers ---------------------------------------------------------------------

    def _start_session_timer(self, call: IncomingCall) -> None:
        """The ACK of our 2xx to the INVITE: the session timer starts."""
        if call._session_timer is None:
            self._arm_session_timer(call)

    def _arm_session_timer(self, call: IncomingCall) -> None:
        """(Re)start the call's timer from now, as its negotiation says: a refresh every half
        interval, or the watchdog (RFC 4028 §10); a call without one has none."""
        if call._session_timer is not None:
            call._session_timer.cancel()
            call._session_timer = None
        timer = call.timer if isinstance(call, GatewayCall) else None
        if timer is None or call.dialog.state is not DialogState.CONFIRMED:
            return
        call._session_timer = SessionTimer(
            timer.interval,
            we_refresh=timer.we_refresh,
            refresh=partial(self.refreshes.send, call),
            expire=partial(self.session_expired, call),
        )
        call._session_timer.start()
        log.info(
            "sip.session_timer",
            sip_call_id=call.call_id,
            interval_s=timer.interval,
            refresher=timer.refresher,
        )

    def session_expired(self, call: IncomingCall, why: str = "no refresh in time") -> None:
        """The session is over (RFC 4028 §10, or our refresh found no dialog): the app hangs
        up; without an app, the BYE goes from here."""
        log.warning("sip.session_expired", sip_call_id=call.call_id, why=why)
        if call._session_timer is not None:
            call._session_timer.cancel()
            call._session_timer = None
        if self.on_session_expired is not None:
            self.on_session_expired(call)
        else:
            self.send_bye(call)
            self.forget(call)

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

    def _handle_info(self, request: SipRequest, addr: tuple[str, int]) -> None:
        """In-dialog INFO: key presses as application/dtmf-relay or application/dtmf."""
        call = self._calls.get(request.call_id or "")
        if call is None:
            self._send_error(request, 481, "Call/Transaction Does Not Exist")
            return
        if not self._validate_in_dialog(call.dialog, request):
            return
        kind = (request.content_type or "").split(";")[0].strip().lower()
        if request.body and kind not in ("application/dtmf-relay", "application/dtmf"):
            self._send_error(
                request, 415, "Unsupported Media Type",
                extra_headers={"Accept": "application/dtmf-relay, application/dtmf"},
            )  # fmt: skip
            return
        self._reply(call.dialog.create_response(request, 200, "OK"))
        digit = info_digit(request.text, kind)
        if digit is not None and self.on_key is not None:
            self.on_key(call, digit)

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
            self._reply(self._error_response(request, 200, "OK", self.capabilities()))

    def capabilities(self) -> dict[str, str]:
        """What an OPTIONS learns (RFC 3261 §11.2): the methods, the body we take, and the
        extensions (timer only where session timers are on)."""
        headers = {"Allow": ", ".join(self._handlers), "Accept": "application/sdp"}
        if self.session_policy is not None:
            headers["Supported"] = "timer"
        return headers

    def _reply(self, response: SipResponse) -> None:
        if self.user_agent:
            response.headers.set_single("User-Agent", self.user_agent)
        self.transport.send_reply(response)

    def refuse_message(
        self, request: SipRequest, source: Source, status: int, reason: str
    ) -> bytes:
        """The answer to a request the transport refused (the source ACL's 403, a bad Via's
        400); the transport sends it, once, outside any transaction."""
        return bytes(self._error_response(request, status, reason, None))

    def refuse(
        self,
        request: SipRequest,
        source: Source,
        status: int,
        reason: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """An answer sent once to the packet's source, outside any transaction: never
        retransmitted, never remembered."""
        self.transport.send_to(self._error_response(request, status, reason, headers), source)

    def _send_error(
        self,
        request: SipRequest,
        status_code: int,
        reason: str,
        *,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.transport.send_reply(self._error_response(request, status_code, reason, extra_headers))

    def _error_response(
        self, request: SipRequest, status: int, reason: str, headers: dict[str, str] | None
    ) -> SipResponse:
        response = SipResponse(status_code=status, reason_phrase=reason)
        for name, value in (headers or {}).items():
            response.headers.set_single(name, value)
        for via in request.headers.get("via"):
            response.headers.append("Via", via)
        for name in ("From", "Call-ID", "CSeq"):
            value = request.headers.get_first(name)
            if value:
                response.headers.set_single(name, value)
        to = request.headers.get_first("to")
        if to:
            response.headers.set_single("To", to if ";tag=" in to else f"{to};tag={generate_tag()}")
        if self.user_agent:
            response.headers.set_single("User-Agent", self.user_agent)
        return response

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
            await self._resend(lambda: self.transport.resend(response), sent_at)
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

    async def _resend(self, send: Callable[[], None], start: float | None = None) -> None:
        """Send again on the timer G/E schedule, then wait out 64*T1 (from `start`: the
        first send)."""
        loop = asyncio.get_running_loop()
        start = loop.time() if start is None else start
        for at in self.timers.retransmit_offsets():
            await asyncio.sleep(start + at - loop.time())
            send()
        await asyncio.sleep(start + self.timers.h - loop.time())

    # --- calls we end -----------------------------------------------------------------------

    def forget(self, call: IncomingCall) -> None:
        """Drop a call we ended ourselves (aiosipua only forgets calls the peer ended).

        Its rejected INVITE stays in the table (retransmissions are still absorbed, the
        error resent until ACK); a 2xx still waiting for its ACK is not resent any more.
        """
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        for txn in self.invites.of_call(call.call_id):
            if txn.state is TxState.ACCEPTED:
                _cancel(txn.timer)
                self.invites.remove(txn)
        call._stop_retransmissions()
        self.refreshes.forget(call.call_id)

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

    def send_bye(self, call: IncomingCall) -> None:
        """End a confirmed call; over UDP the BYE is resent (timer E) until answered."""
        if call.dialog.state is not DialogState.CONFIRMED:
            return
        host, port = call._signaling_addr()
        bye = call.dialog.create_request(
            "BYE", via_host=host, via_port=port, via_transport=self.transport.name
        )
        if self.user_agent:
            bye.headers.set_single("User-Agent", self.user_agent)
        call.dialog.terminate()
        destination = call.source_addr
        self._send_in_dialog(call, bye)
        branch = bye.via[0].branch or ""
        if not self.transport.reliable and branch:
            self._byes[branch] = asyncio.get_running_loop().create_task(
                self._resend_bye(branch, lambda: self.transport.send(bye, destination))
            )

    def _send_in_dialog(self, call: IncomingCall, request: SipRequest) -> None:
        """Over the call's connection; over TLS, a new verified one when it is gone: to the
        first proxy of the route set (Kamailio's Record-Route) when there is one, else to the
        caller's Contact (RFC 3261 §12.2.1.1)."""
        transport = self.transport
        if isinstance(transport, TlsTransport):
            route = call.dialog.route_set[0] if call.dialog.route_set else ""
            target = route.split("<", 1)[-1].split(">", 1)[0].strip()  # name-addr -> URI
            transport.send_reconnecting(
                request, call.source_addr, target or call.dialog.remote_target
            )
        else:
            transport.send(request, call.source_addr)

    async def transfer(
        self, call: IncomingCall, target: str, timeout_s: float = 30.0
    ) -> tuple[bool, str]:
        """Blind transfer (RFC 3515): REFER the caller to `target`, wait for the outcome.

        True once the caller's side reports the new call answered (NOTIFY sipfrag 2xx);
        False, with the reason, when the REFER is refused or the new call fails.
        """
        if call.dialog.state is not DialogState.CONFIRMED:
            return False, "the call is not up"
        host, port = call._signaling_addr()
        refer = call.dialog.create_request(
            "REFER", via_host=host, via_port=port, via_transport=self.transport.name
        )
        refer.headers.set_single("Refer-To", f"<{target}>")
        refer.headers.set_single("Referred-By", f"<{call.dialog.local_uri}>")
        refer.headers.set_single("Contact", f"<sip:{format_addr(host, port)}>")
        if self.user_agent:
            refer.headers.set_single("User-Agent", self.user_agent)
        branch = refer.via[0].branch or ""
        answered: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._refers[branch] = answered
        progress = self._transfers[call.call_id] = asyncio.Queue()
        destination = call.source_addr
        self._send_in_dialog(call, refer)
        resend = (
            None
            if self.transport.reliable
            else asyncio.ensure_future(
                self._resend(lambda: self.transport.send(refer, destination))
            )
        )
        try:
            async with asyncio.timeout(timeout_s):
                response = await answered
                if resend is not None:
                    resend.cancel()
                if response.status_code >= 300:
                    return False, f"REFER refused: {response.status_code} {response.reason_phrase}"
                while True:
                    status, reason = await progress.get()
                    if status >= 200:
                        return status < 300, f"{status} {reason}".strip()
        except TimeoutError:
            return False, f"no transfer outcome within {timeout_s:g} s"
        finally:
            if resend is not None:
                resend.cancel()
            self._refers.pop(branch, None)
            self._transfers.pop(call.call_id, None)

    def _transfer_progress(self, call_id: str, status: int, reason: str) -> None:
        """A NOTIFY (Event: refer) told how the caller's new call is going."""
        log.info("sip.transfer_progress", sip_call_id=call_id, status=status, reason=reason)
        queue = self._transfers.get(call_id)
        if queue is not None:
            queue.put_nowait((status, reason))

    async def _resend_bye(self, branch: str, send: Callable[[], None]) -> None:
        await self._resend(send)
        self._byes.pop(branch, None)
        log.info("sip.bye_timeout", branch=branch)


_DIGITS = "0123456789*#ABCD"


def info_digit(body: str, kind: str) -> str | None:
    """The key in an INFO body: `Signal=5` (dtmf-relay) or `5` (application/dtmf); events
    10 and 11 are * and # (RFC 4733 numbering, which some phones send)."""
    value = body.strip()
    if kind == "application/dtmf-relay":
        value = next(
            (
                line.split("=", 1)[1].strip()
                for line in body.splitlines()
                if line.strip().lower().startswith("signal=")
            ),
            "",
        )
    if value in ("10", "11"):
        return "*#"[int(value) - 10]
    value = value.upper()
    return value if len(value) == 1 and value in _DIGITS else None


def _cancel(timer: Any) -> None:
    if timer is not None:
        timer.cancel()


class _Unacceptable(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


def _offer(request: SipRequest) -> SdpMessage | None:
    """The request's SDP offer, or None when it has no body."""
    if not request.body:
        return None
    if (request.content_type or "").split(";")[0].strip().lower() != "application/sdp":
        raise _Unacceptable(415, "Unsupported Media Type", {"Accept": "application/sdp"})
    try:
        return parse_sdp(request.text)
    except (ValueError, IndexError) as exc:
        log.warning("sip.bad_sdp", sip_call_id=request.call_id, error=str(exc)[:200])
        raise _Unacceptable(400, "Malformed SDP") from None


def respond(
    call: IncomingCall,
    status: int,
    reason: str,
    *,
    sdp: SdpMessage | None = None,
    retry_after: int | None = None,
    headers: Mapping[str, str | list[str]] | None = None,
) -> None:
    """A response to the call's current INVITE or re-INVITE; the dialog is left as it is.

    A header given a list of values is sent as one line per value, in that order: digest
    challenges must not be folded into one line (RFC 3261 §7.3.1, RFC 8760 §2.4).
    """
    extra = {name: v for name, v in (headers or {}).items() if isinstance(v, str)}
    repeated = [(n, v) for n, vs in (headers or {}).items() if not isinstance(vs, str) for v in vs]
    if retry_after is not None:
        extra["Retry-After"] = str(retry_after)
    if not repeated:
        call._send_response(
            status,
            reason,
            body=serialize_sdp(sdp) if sdp is not None else "",
            content_type="application/sdp" if sdp is not None else "",
            extra_headers=extra or None,
        )
        return
    # As IncomingCall._send_response builds it, which sets each extra header only once.
    contact = f"<sip:{format_addr(*call._signaling_addr())}>" if call.transport else None
    response = call.dialog.create_response(call.invite, status, reason, contact=contact)
    if sdp is not None:
        response.text = serialize_sdp(sdp)
        response.headers.set_single("Content-Type", "application/sdp")
    if call.user_agent:
        response.headers.set_single("User-Agent", call.user_agent)
    for name, value in extra.items():
        response.headers.set_single(name, value)
    for name, value in repeated:
        response.headers.append(name, value)
    if call.transport is not None:
        call.transport.send_reply(response)


def reject(
    call: IncomingCall,
    status: int,
    reason: str,
    *,
    retry_after: int | None = None,
    headers: Mapping[str, str | list[str]] | None = None,
) -> None:
    """A final error response to the initial INVITE, with Retry-After where a PBX should
    try again later; it is resent until ACKed (timer G)."""
    respond(call, status, reason, retry_after=retry_after, headers=headers)
    call.dialog.terminate()
