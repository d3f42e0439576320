"""What the gateway's UAS does inside a call once it exists: aiosipua's UAS plus the
in-dialog requests, the session timer, and the requests of our own.

- In-dialog UPDATE (a session refresh, RFC 3311/4028) and INFO (key presses) are answered
  here; a bad tag or CSeq gets aiosipua's 481/500 (RFC 3261 §12.2.2).
- Session timers (RFC 4028, session_timer.py): the timer a call negotiated is armed once its
  2xx is ACKed, re-armed by every refresh; when we refresh, refresh.py sends the UPDATE or
  re-INVITE; when the caller's refreshes stop, `on_session_expired`.
- Our BYE and REFER (outgoing.py) and our refreshes get their responses here first.
- The stateless answers every layer uses: `refuse` (to the packet's source, outside any
  transaction) and the error response built from the request alone.

The INVITE server transactions (new calls, re-INVITE, ACK, CANCEL, OPTIONS) are the layer
above, `uas.GatewayUAS`: kept apart so that each class holds one concern and stays short.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import structlog
from aiosipua import IncomingCall, SdpMessage, SipRequest, SipResponse, SipUAS
from aiosipua.dialog import DialogState
from aiosipua.session_timer import SessionTimer
from aiosipua.utils import format_addr

from .answer import GatewayCall
from .invite_client import InviteClient, PlacedCall
from .messages import error_response, info_digit
from .outgoing import OutgoingRequests
from .refresh import Refreshes
from .session_timer import IntervalTooSmall, Negotiated, Refresher, TimerPolicy, negotiate
from .transactions import SipTimers
from .transport import Listener, Source
from .validate import retarget

log = structlog.get_logger("gateway.sip")


class SideLeg(Protocol):
    """A dialog of ours that is not a call of its own (a warm transfer's leg to the human):
    what the app hands it of the UAS's in-dialog events (calls.py)."""

    def bye_in(self) -> None: ...
    def reinvite(self) -> None: ...
    def ack(self, request: SipRequest) -> None: ...
    def expired(self) -> None: ...
    def local_sdp(self) -> SdpMessage | None: ...
    def refresh_answered(self, answer: SdpMessage) -> None: ...


class InDialogUAS(SipUAS):
    """aiosipua's UAS with the gateway's in-dialog requests, session timers and requests of
    its own; `uas.GatewayUAS` adds the INVITE server transactions."""

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
        self.outgoing = OutgoingRequests(transport, self.timers, self.user_agent)
        self.on_transfer_progress = self.outgoing.transfer_progress
        self._handlers["INFO"] = self._handle_info
        self.on_key: Callable[[IncomingCall, str], Any] | None = None
        # Session timers (None: off): the app ends an expired call, gives the SDP a refresh
        # re-INVITE repeats, and takes the answer to it.
        self.session_policy = session_timers
        self.on_session_expired: Callable[[IncomingCall], Any] | None = None
        self.refreshes = Refreshes(self)
        self._handlers["UPDATE"] = self._handle_update
        # Our outbound INVITEs by Call-ID (invite_client.py), until their call ends.
        self.invite_clients: dict[str, InviteClient] = {}
        # A warm transfer's second legs by Call-ID: the human's requests go to its leg.
        self.side_legs: dict[str, SideLeg] = {}

    async def stop(self) -> None:
        for client in list(self.invite_clients.values()):
            client.close()
        self.invite_clients.clear()
        self.outgoing.close()
        self.refreshes.close()
        await super().stop()

    def _on_message(self, msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        if isinstance(msg, SipResponse):
            vias = msg.via
            branch = (vias[0].branch or "") if vias else ""
            if self.outgoing.on_response(msg, branch) or self.refreshes.on_response(msg, branch):
                return
            client = self.invite_clients.get(msg.call_id or "")
            if client is not None:
                client.on_response(msg)
                return
        super()._on_message(msg, addr)

    # --- in-dialog requests in --------------------------------------------------------------

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
            self.arm_session_timer(call)

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

    # --- session timers ---------------------------------------------------------------------

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

    def _start_session_timer(self, call: IncomingCall) -> None:
        """The ACK of our 2xx to the INVITE: the session timer starts."""
        if call._session_timer is None:
            self.arm_session_timer(call)

    def placed_call_up(self, sip: PlacedCall, client: InviteClient) -> None:
        """A call we placed is answered and ACKed: the callee's BYE, INFO and re-INVITEs now
        reach it, and the session timer its 2xx put in force runs (we refresh, or watch)."""
        if client.invite is not None:
            sip.invite = client.invite
        sip.answer = client.answer
        sip.timer = sip.offered_timer = client.timer
        self._calls[sip.call_id] = sip
        self.arm_session_timer(sip)

    def arm_session_timer(self, call: IncomingCall) -> None:
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
            refresher=_role(call.role, timer.we_refresh),  # in the INVITE's terms
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

    # --- calls we end or transfer -----------------------------------------------------------

    def forget(self, call: IncomingCall) -> None:
        """Drop a call we ended ourselves (aiosipua only forgets calls the peer ended): no
        2xx resent any more, no refresh in flight."""
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        call._stop_retransmissions()
        self.refreshes.forget(call.call_id)

    def send_bye(self, call: IncomingCall) -> None:
        """End a confirmed call; over UDP the BYE is resent (timer E) until answered."""
        self.outgoing.send_bye(call)

    async def transfer(
        self,
        call: IncomingCall,
        target: str,
        timeout_s: float = 30.0,
        *,
        refer_to: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[bool, str]:
        """REFER (RFC 3515), blind or with Replaces: see `OutgoingRequests.transfer`."""
        return await self.outgoing.transfer(
            call, target, timeout_s, refer_to=refer_to, headers=headers
        )

    # --- stateless answers ------------------------------------------------------------------

    def _reply(self, response: SipResponse) -> None:
        if self.user_agent:
            response.headers.set_single("User-Agent", self.user_agent)
        self.transport.send_reply(response)

    def refuse_message(
        self, request: SipRequest, source: Source, status: int, reason: str
    ) -> bytes:
        """The answer to a request the transport refused (the source ACL's 403, a bad Via's
        400); the transport sends it, once, outside any transaction."""
        return bytes(error_response(request, status, reason, None, self.user_agent))

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
        response = error_response(request, status, reason, headers, self.user_agent)
        self.transport.send_to(response, source)

    def _send_error(
        self,
        request: SipRequest,
        status_code: int,
        reason: str,
        *,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        response = error_response(request, status_code, reason, extra_headers, self.user_agent)
        self.transport.send_reply(response)


def _role(ours: Refresher, we_refresh: bool) -> Refresher:
    """Who refreshes, named by the roles of the INVITE that made the dialog."""
    if we_refresh:
        return ours
    return "uac" if ours == "uas" else "uas"
