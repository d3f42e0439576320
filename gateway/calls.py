"""The registry of calls in progress, by SIP Call-ID, and the in-dialog SIP events it routes
to them (BYE, CANCEL, ACK, re-INVITE, session refresh, INFO keys)."""

from __future__ import annotations

import structlog
from aiosipua import IncomingCall, SdpMessage, SipRequest

from .bridge.setup import ActiveCall
from .refusals import PHRASES
from .sip.answer import respond
from .sip.sdp import NotAcceptable
from .sip.session_timer import SESSION_TIMER_EXPIRED
from .sip.uas import GatewayUAS

log = structlog.get_logger("gateway")


class Calls(dict[str, ActiveCall]):
    """The calls in progress by SIP Call-ID; each stays until its record is written."""

    def wire(self, uas: GatewayUAS) -> None:
        """Route the UAS's in-dialog events to the calls."""
        uas.on_bye = lambda call, request: self._on_bye(uas, call)
        uas.on_cancelled = lambda call: self.end(call.call_id, "caller_cancel")
        uas.on_key = self._on_info_key
        uas.on_ack_timeout = lambda call: self.end(call.call_id, "ack_timeout")
        uas.on_ack = lambda call, request: self._on_ack(uas, call, request)
        uas.on_reinvite = lambda call: self._on_reinvite(uas, call)
        uas.on_session_expired = lambda call: self._on_session_expired(uas, call)
        uas.refreshes.local_sdp = lambda call: self._local_sdp(uas, call)
        uas.refreshes.on_answer = lambda call, answer: self._on_refresh_answer(uas, call, answer)

    def end(self, sip_call_id: str, reason: str) -> None:
        """End a call for `reason` (its first reason wins): its task is cancelled, its
        teardown runs."""
        call = self.get(sip_call_id)
        if call is None or call.task is None or call.end_reason is not None:
            return
        call.end_reason = reason
        call.task.cancel()

    def _on_bye(self, uas: GatewayUAS, sip: IncomingCall) -> None:
        """A BYE: the end of a call, or of a warm transfer's second leg (its transfer hears)."""
        side = uas.side_legs.pop(sip.call_id, None)
        if side is not None:
            side.bye_in()
        else:
            self.end(sip.call_id, "caller_bye")

    def _on_session_expired(self, uas: GatewayUAS, sip: IncomingCall) -> None:
        """The session timer ran out: the call ends; a second leg's human is gone (its
        transfer hangs the leg up: our BYE)."""
        side = uas.side_legs.get(sip.call_id)
        if side is not None:
            side.expired()
        else:
            self.end(sip.call_id, SESSION_TIMER_EXPIRED)

    def carries(self, source: tuple[str, int]) -> bool:
        """Whether a call came from `source` (its TCP connection is then kept)."""
        return any(call.sip.source_addr == source for call in self.values())

    def _on_ack(self, uas: GatewayUAS, sip: IncomingCall, request: SipRequest) -> None:
        call, side = self.get(sip.call_id), uas.side_legs.get(sip.call_id)
        if side is not None:
            side.ack(request)  # the answer to our offer in a 200 to an offerless re-INVITE
            return
        if call is None or call.leg is None:
            return
        try:
            call.leg.on_ack(request)
        except NotAcceptable as exc:
            log.warning("call.bad_answer", call_id=call.id, reason=str(exc))
            self.end(sip.call_id, "bad_sdp_answer")

    def _on_reinvite(self, uas: GatewayUAS, sip: IncomingCall) -> None:
        call = self.get(sip.call_id)
        side = uas.side_legs.get(sip.call_id)
        if side is not None:
            side.reinvite()  # the human's PBX: a refresh, a hold, a move
        elif call is None or call.leg is None:  # still being set up, or already ending
            respond(sip, 500, PHRASES[500], retry_after=1)  # §14.2
        else:
            call.leg.on_reinvite()

    def _local_sdp(self, uas: GatewayUAS, sip: IncomingCall) -> SdpMessage | None:
        """The SDP we last sent in this call: a refresh re-INVITE repeats it (RFC 4028 §7.4)."""
        call, side = self.get(sip.call_id), uas.side_legs.get(sip.call_id)
        if side is not None:
            return side.local_sdp()
        return call.leg.sdp.local if call is not None and call.leg is not None else None

    def _on_refresh_answer(self, uas: GatewayUAS, sip: IncomingCall, answer: SdpMessage) -> None:
        call, side = self.get(sip.call_id), uas.side_legs.get(sip.call_id)
        if side is not None:
            side.refresh_answered(answer)
        elif call is not None and call.leg is not None:
            call.leg.on_refresh_answer(answer)

    def _on_info_key(self, sip: IncomingCall, digit: str) -> None:
        """A key sent as SIP INFO goes the same way as an RFC 4733 one."""
        call = self.get(sip.call_id)
        if call is not None and call.bridge is not None:
            call.bridge.key(digit, source="info")
