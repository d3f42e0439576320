"""Our session refreshes (RFC 4028 §7.4), the gateway acting as the UAC of one request.

When the negotiation makes us the refresher, the UAS's timer calls `Refreshes.send` every half
interval. The refresh is an UPDATE when the caller's Allow lists it, else a re-INVITE with the
SDP we last sent, unchanged (same o= version, RFC 3264 §8). Over UDP the request is resent on
the timer E/A schedule until a final response; a re-INVITE's final response is ACKed (a 2xx by
a new ACK, sent again for each retransmitted 2xx for 64*T1; an error in its transaction).

Outcomes: a 2xx's Session-Expires is taken as the interval in force; 422 retries once with its
Min-SE; 405/501 to UPDATE switch to re-INVITE; 491 retries after 2.1-4 s (RFC 3261 §14.1);
408, 481 or no answer at all mean the dialog is gone (RFC 3261 §12.2.1.2): the call ends.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from aiosipua import IncomingCall, SipRequest, SipResponse, parse_sdp
from aiosipua.dialog import DialogState
from aiosipua.sdp import SdpMessage, serialize_sdp
from aiosipua.utils import format_addr

from .retransmit import resend
from .session_timer import (
    MAX_INTERVAL_S,
    Negotiated,
    TimerPolicy,
    allows,
    bounded,
    min_se,
    parse_session_expires,
)
from .transactions import SipTimers
from .transport import Listener
from .validate import retarget

log = structlog.get_logger("gateway.sip")


class Owner(Protocol):
    """What a refresh needs of the UAS whose calls it refreshes (in_dialog.InDialogUAS): a
    Protocol, so that this module does not import the UAS that imports it."""

    @property
    def transport(self) -> Listener: ...
    @property
    def timers(self) -> SipTimers: ...
    @property
    def session_policy(self) -> TimerPolicy | None: ...
    @property
    def user_agent(self) -> str | None: ...
    def get_call(self, call_id: str) -> IncomingCall | None: ...
    def session_expired(self, call: IncomingCall, why: str = ...) -> None: ...
    def arm_session_timer(self, call: IncomingCall) -> None: ...


class Refreshes:
    """The refreshes in flight, by Via branch, for one UAS."""

    def __init__(self, uas: Owner) -> None:
        self.uas = uas
        # Set by the app: the SDP a refresh re-INVITE repeats, and where its answer goes.
        self.local_sdp: Callable[[IncomingCall], SdpMessage | None] = lambda call: None
        self.on_answer: Callable[[IncomingCall, SdpMessage], Any] | None = None
        self._waiting: dict[str, asyncio.Future[SipResponse]] = {}  # by branch
        self._acks: dict[str, SipRequest] = {}  # the ACK of a 2xx, by the INVITE's branch
        # One refresh or re-INVITE of ours at a time, by Call-ID.
        self._tasks: dict[str, asyncio.Task[int | None]] = {}
        self._no_update: set[str] = set()  # Call-IDs whose UPDATE was refused (405/501)
        self._later: dict[str, asyncio.TimerHandle] = {}
        self._invites: set[str] = set()  # Call-IDs with a re-INVITE of ours in progress
        self._lengthened: set[str] = set()  # Call-IDs whose last refresh got a 422 and a retry

    def close(self) -> None:
        for call_id in list(self._tasks) + list(self._later):
            self.forget(call_id)

    def forget(self, call_id: str) -> None:
        """The call is over: no refresh in flight, none scheduled."""
        task = self._tasks.pop(call_id, None)
        if task is not None:
            task.cancel()
        later = self._later.pop(call_id, None)
        if later is not None:
            later.cancel()
        self._no_update.discard(call_id)
        self._lengthened.discard(call_id)

    def invite_pending(self, call_id: str) -> bool:
        """Whether our refresh re-INVITE in this call awaits its final response."""
        return call_id in self._invites

    def on_response(self, response: SipResponse, branch: str) -> bool:
        """A response to one of our refreshes (True: it was ours, and is handled)."""
        waiting = self._waiting.get(branch)
        if waiting is not None:
            if response.status_code >= 200 and not waiting.done():
                waiting.set_result(response)
            return True
        ack = self._acks.get(branch)
        if ack is not None:
            call = self.uas.get_call(ack.call_id or "")
            if call is not None and 200 <= response.status_code < 300:
                self.uas.transport.send(ack, call.source_addr)  # the 2xx again: ACK was lost
            return True
        return False

    def send(self, call: IncomingCall) -> None:
        """Refresh the session now (the timer's half interval, or a retry)."""
        if call.dialog.state is not DialogState.CONFIRMED:
            return
        if call.call_id in self._tasks:
            log.info("sip.refresh_pending", sip_call_id=call.call_id)
            return
        timer: Negotiated | None = getattr(call, "timer", None)
        if timer is None:
            return
        peer_allows = getattr(call, "peer_allows", lambda method: allows(call.invite, method))
        update = peer_allows("UPDATE") and call.call_id not in self._no_update
        body = None
        if not update:
            sdp = self.local_sdp(call)
            if sdp is None:
                log.warning("sip.refresh_skipped", sip_call_id=call.call_id, why="no SDP yet")
                return
            body = serialize_sdp(sdp)
        request = self._request(call, "UPDATE" if update else "INVITE", timer, body)
        self._tasks[call.call_id] = asyncio.get_running_loop().create_task(self._run(call, request))

    async def reinvite(self, call: IncomingCall, sdp: SdpMessage) -> int | None:
        """A re-INVITE of ours with a new offer (hold: sendonly; resume: sendrecv), sent,
        resent, ACKed and answered as a refresh is; its final status (None: none came).
        A refresh already in flight is waited for first (one INVITE at a time, §14.1)."""
        if call.dialog.state is not DialogState.CONFIRMED:
            return None
        pending = self._tasks.get(call.call_id)
        if pending is not None:
            await asyncio.wait([pending], timeout=self.uas.timers.h)
        timer: Negotiated | None = getattr(call, "timer", None)
        request = self._request(call, "INVITE", timer, serialize_sdp(sdp))
        task = asyncio.get_running_loop().create_task(self._run(call, request))
        self._tasks[call.call_id] = task
        return await task

    def _request(
        self, call: IncomingCall, method: str, timer: Negotiated | None, body: str | None
    ) -> SipRequest:
        uas = self.uas
        host, port = call._signaling_addr()
        request = call.dialog.create_request(
            method, via_host=host, via_port=port, via_transport=uas.transport.name
        )
        request.headers.set_single("Contact", f"<sip:{format_addr(host, port)}>")
        request.headers.set_single("Supported", "timer")
        if timer is not None:
            request.headers.set_single("Session-Expires", timer.in_our_request)
        if uas.session_policy is not None:
            request.headers.set_single("Min-SE", str(uas.session_policy.min_se_s))
        if uas.user_agent:
            request.headers.set_single("User-Agent", uas.user_agent)
        if body is not None:
            request.text = body
            request.headers.set_single("Content-Type", "application/sdp")
        return request

    async def _run(self, call: IncomingCall, request: SipRequest) -> int | None:
        uas = self.uas
        branch = request.via[0].branch or ""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[SipResponse] = loop.create_future()
        self._waiting[branch] = answered
        if request.method == "INVITE":
            self._invites.add(call.call_id)
        destination = call.source_addr
        log.info("sip.refresh_sent", sip_call_id=call.call_id, method=request.method)
        uas.transport.send(request, destination)
        resending = (
            None
            if uas.transport.reliable
            else loop.create_task(
                resend(uas.timers, lambda: uas.transport.send(request, destination))
            )
        )
        try:
            async with asyncio.timeout(uas.timers.h):
                response: SipResponse | None = await answered
        except TimeoutError:
            response = None
        finally:
            if resending is not None:
                resending.cancel()
            self._waiting.pop(branch, None)
            self._invites.discard(call.call_id)
            if self._tasks.get(call.call_id) is asyncio.current_task():
                del self._tasks[call.call_id]
        if response is not None and request.method == "INVITE":
            self._ack(call, request, response, branch)
        self._outcome(call, request, response)
        return response.status_code if response is not None else None

    def _ack(
        self, call: IncomingCall, invite: SipRequest, response: SipResponse, branch: str
    ) -> None:
        """ACK the final response to our re-INVITE (RFC 3261 §13.2.2.4, §17.1.1.3)."""
        uas = self.uas
        cseq = invite.cseq.seq if invite.cseq else call.dialog.local_cseq
        if 200 <= response.status_code < 300:
            host, port = call._signaling_addr()
            ack = call.dialog.create_request(
                "ACK", via_host=host, via_port=port, via_transport=uas.transport.name
            )
            call.dialog.local_cseq -= 1  # an ACK takes the INVITE's CSeq number, not a new one
            ack.headers.set_single("CSeq", f"{cseq} ACK")
            # Kept for 64*T1: each retransmitted 2xx is ACKed again.
            self._acks[branch] = ack
            asyncio.get_running_loop().call_later(uas.timers.h, self._acks.pop, branch, None)
        else:
            ack = SipRequest(method="ACK", uri=invite.uri)
            ack.headers.append("Via", invite.headers.get("via")[0])
            for name in ("From", "Call-ID", "Max-Forwards"):
                value = invite.headers.get_first(name)
                if value:
                    ack.headers.set_single(name, value)
            ack.headers.set_single("To", response.headers.get_first("to") or "")
            ack.headers.set_single("CSeq", f"{cseq} ACK")
            for route in invite.headers.get("route"):
                ack.headers.append("Route", route)
        if uas.user_agent:
            ack.headers.set_single("User-Agent", uas.user_agent)
        ack.headers.set_single("Content-Length", "0")
        uas.transport.send(ack, call.source_addr)

    def _outcome(
        self, call: IncomingCall, request: SipRequest, response: SipResponse | None
    ) -> None:
        uas = self.uas
        method = request.method
        if uas.get_call(call.call_id) is not call:
            return  # ended meanwhile
        if call.dialog.state is not DialogState.CONFIRMED:
            return
        status = response.status_code if response is not None else None
        log.info("sip.refresh_answered", sip_call_id=call.call_id, method=method, status=status)
        if response is None or status in (408, 481):
            uas.session_expired(call, why=f"{method} refresh: {status or 'no answer'}")
            return
        assert status is not None
        timer: Negotiated | None = getattr(call, "timer", None)
        if 200 <= status < 300:
            self._lengthened.discard(call.call_id)
            retarget(call.dialog, response)
            self._adopt(call, response, timer)
            if method == "INVITE" and response.body and self.on_answer is not None:
                try:
                    self.on_answer(call, parse_sdp(response.text))
                except (ValueError, IndexError) as exc:
                    log.warning("sip.refresh_bad_sdp", sip_call_id=call.call_id, error=str(exc))
        elif status == 422 and timer is not None and call.call_id not in self._lengthened:
            asked = min_se(response)
            if timer.interval < asked <= MAX_INTERVAL_S:
                self._lengthened.add(call.call_id)  # once: a peer cannot keep us retrying
                refresher = "uac" if timer.we_refresh else "uas"  # whoever refreshed still does
                self._replace(call, Negotiated(asked, refresher, timer.require, role="uac"))
                self.send(call)
        elif status in (405, 501) and method == "UPDATE":
            self._no_update.add(call.call_id)
            self.send(call)
        elif status == 491:
            self._later[call.call_id] = asyncio.get_running_loop().call_later(
                random.uniform(2.1, 4.0), self._retry, call
            )
        else:
            log.warning("sip.refresh_refused", sip_call_id=call.call_id, status=status)

    def _retry(self, call: IncomingCall) -> None:
        self._later.pop(call.call_id, None)
        self.send(call)

    def _adopt(self, call: IncomingCall, response: SipResponse, timer: Negotiated | None) -> None:
        """§7.4: the 2xx's Session-Expires is the interval (and refresher) in force; a 2xx
        without one leaves ours as it was. Its refresher names a role in our request's
        transaction: "uac" is us (a UAS that will not refresh answers so to our
        refresher=uas), "uas" the peer; none (§9 says it MUST be there) leaves it as it was."""
        raw = response.headers.get_first("session-expires") or response.headers.get_first("x")
        if raw is None or timer is None:
            return
        interval, refresher = parse_session_expires(raw)
        if interval is None or interval < 1:
            return
        if refresher is None:
            refresher = "uac" if timer.we_refresh else "uas"
        ours = self.uas.session_policy.min_se_s if self.uas.session_policy else 1
        new = Negotiated(bounded(interval, ours), refresher, timer.require, role="uac")
        if new.we_refresh != timer.we_refresh or new.interval != timer.interval:
            self._replace(call, new)

    def _replace(self, call: IncomingCall, timer: Negotiated) -> None:
        call.timer = call.offered_timer = timer  # type: ignore[attr-defined]
        self.uas.arm_session_timer(call)
