"""Our INVITE to a trunk: the client transaction and the early dialog (RFC 3261 §13.2, §17.1.1).

aiosipua's SipUAC places calls too, but leaves out what a trunk relies on: it never resends
the INVITE over UDP (timer A) nor gives up on a silent trunk (timer B), never ACKs a final
error (§17.1.1.3; a trunk resends its 486 until it gets one), writes UDP in every Via, keeps
no route set or Contact from the 2xx, and drops the SDP of a 183 (early media). This module
keeps its Dialog and digest code and does the transaction itself, over the gateway's own
listeners (any of UDP, TCP, TLS). Every response of our call reaches `on_response` first
(the UAS routes them by Call-ID); the shell awaits `provisional()` and `final`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import structlog
from aiosipua import SdpMessage, SipRequest, SipResponse, parse_sdp, serialize_sdp
from aiosipua.auth import SipDigestAuth, answer_challenge, build_credentials
from aiosipua.dialog import Dialog, DialogState
from aiosipua.headers import AuthChallenge, CSeq, parse_auth, stringify_auth, stringify_cseq
from aiosipua.utils import format_addr, generate_call_id, generate_tag

from .answer import GatewayCall
from .session_timer import (
    MAX_INTERVAL_S,
    Negotiated,
    Refresher,
    TimerPolicy,
    allows,
    answered,
    min_se,
)
from .transactions import SipTimers
from .transport import Listener, Source

log = structlog.get_logger("gateway.sip")

MAX_PROVISIONALS = 32  # queued 1xx a slow reader may have to catch up with; more are dropped
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"


@dataclass(frozen=True, slots=True)
class Answer:
    """A response that matters to the call: a 1xx (with early media SDP or not) or a final."""

    status: int
    reason: str
    sdp: SdpMessage | None = None
    local: bool = False  # no response came: timer B, or no answer to our CANCEL


class InviteClient:
    """One INVITE we send, until its final response (and the ACKs that follow it)."""

    def __init__(
        self,
        transport: Listener,
        timers: SipTimers,
        *,
        from_uri: str,
        to_uri: str,
        destination: Source,
        contact: Source,
        offer: SdpMessage,
        auth: SipDigestAuth | None = None,
        user_agent: str | None = None,
        dialog: Dialog | None = None,
        headers: dict[str, str] | None = None,
        session_timers: TimerPolicy | None = None,
    ) -> None:
        """`dialog`: the early dialog to use (its Call-ID chosen already), else a new one;
        `headers`: more headers on the INVITE (a warm transfer's context, sanitised);
        `session_timers`: ask for a session timer (RFC 4028 §7.1), None: say nothing of them."""
        self.headers = dict(headers or {})
        self.session_timers = session_timers
        self._interval = session_timers.expires_s if session_timers is not None else 0
        self._lengthened = False  # a 422 was answered with a longer interval (once)
        self.timer: Negotiated | None = None  # what the 2xx put in force
        self.answer: SipResponse | None = None  # the 2xx (its Allow is the callee's)
        # The challenge answered last (the 401/407) and how often its nonce was used since.
        self._challenge: tuple[SipResponse, int] | None = None
        self._nonce_count = 0
        self.transport = transport
        self.timers = timers
        self.destination = destination
        self.contact = contact
        self.offer = offer
        self.auth = auth
        self.user_agent = user_agent
        self.dialog = dialog or Dialog(
            call_id=generate_call_id(contact[0]),
            local_tag=generate_tag(),
            local_uri=from_uri,
            remote_uri=to_uri,
            remote_target=to_uri,
            state=DialogState.EARLY,
        )
        self.invite: SipRequest | None = None
        loop = asyncio.get_running_loop()
        self.final: asyncio.Future[Answer] = loop.create_future()
        self._provisionals: asyncio.Queue[Answer] = asyncio.Queue(MAX_PROVISIONALS)
        self.proceeding = False  # a 1xx came: no more resends, CANCEL allowed (§9.1)
        self.cancelled = False  # asked for; sent once a provisional came (§9.1)
        self._cancel_sent = False
        self._auth_tried = False
        self._ack: SipRequest | None = None  # the ACK of the 2xx, sent again for each resent 2xx
        self._resending: asyncio.Task[None] | None = None
        # Called as the 2xx is ACKed, before anyone awaiting `final` runs: the callee's BYE
        # may follow the ACK at once, and must find the dialog.
        self.on_answered: Callable[[], None] = lambda: None

    @property
    def call_id(self) -> str:
        return self.dialog.call_id

    # --- out ------------------------------------------------------------------------------

    def send(self, authorization: tuple[str, str] | None = None) -> None:
        """The INVITE (again, with credentials, after a challenge): a new branch and CSeq."""
        host, port = self.contact
        invite = self.dialog.create_request(
            "INVITE", via_host=host, via_port=port, via_transport=self.transport.name
        )
        scheme = ";transport=tls" if self.transport.name == "TLS" else ""
        if self.transport.name == "TCP":
            scheme = ";transport=tcp"
        invite.headers.set_single("Contact", f"<sip:{format_addr(host, port)}{scheme}>")
        invite.headers.set_single("Allow", ALLOW)
        if self.user_agent:
            invite.headers.set_single("User-Agent", self.user_agent)
        for name, value in self.headers.items():
            invite.headers.set_single(name, value)
        if self.session_timers is not None:
            # No refresher named: §7.1 leaves the choice to the UAS's negotiation.
            invite.headers.set_single("Supported", "timer")
            invite.headers.set_single("Session-Expires", str(self._interval))
            invite.headers.set_single("Min-SE", str(self.session_timers.min_se_s))
        if authorization is not None:
            invite.headers.set_single(*authorization)
        invite.text = serialize_sdp(self.offer)
        invite.headers.set_single("Content-Type", "application/sdp")
        self.invite = invite
        self._send(invite)
        self._stop_resending()
        self._resending = asyncio.get_running_loop().create_task(self._timers_a_b(invite))

    async def _timers_a_b(self, invite: SipRequest) -> None:
        """Timer A: the INVITE again after T1, 2*T1, ... over UDP until a response; timer B:
        no response at all within 64*T1 is a failure (408, as §8.1.3.1 says to treat it)."""
        loop = asyncio.get_running_loop()
        start, interval = loop.time(), self.timers.t1
        deadline = start + self.timers.h
        while loop.time() + interval < deadline and not self.proceeding:
            await asyncio.sleep(interval)
            if self.proceeding:
                return
            if not self.transport.reliable:
                self._send(invite)
            interval *= 2
        await asyncio.sleep(max(deadline - loop.time(), 0.0))
        if not self.proceeding:
            self._finish(Answer(408, "no response from the trunk", local=True))

    def cancel(self) -> None:
        """CANCEL the ringing INVITE; its 487 (or a race's 200) ends it. Before any
        provisional response the CANCEL waits for one (§9.1: a CANCEL may overtake an INVITE
        that has not reached the callee); a final response meanwhile makes it moot (an error
        is ACKed, a 2xx ACKed and then ended by its call with a BYE), timer B still ends an
        INVITE that gets no response at all."""
        if self.invite is None or self.final.done() or self.cancelled:
            return
        self.cancelled = True
        if self.proceeding:
            self._send_cancel()

    def _send_cancel(self) -> None:
        invite = self.invite
        assert invite is not None
        self._cancel_sent = True
        cancel = SipRequest(method="CANCEL", uri=invite.uri)
        for name in ("Via", "From", "To", "Call-ID"):
            value = invite.headers.get_first(name)
            if value:
                cancel.headers.set_single(name, value)
        seq = invite.cseq.seq if invite.cseq else 1
        cancel.headers.set_single("CSeq", stringify_cseq(CSeq(seq=seq, method="CANCEL")))
        cancel.headers.set_single("Max-Forwards", "70")
        if self.user_agent:
            cancel.headers.set_single("User-Agent", self.user_agent)
        self._send(cancel)
        if not self.transport.reliable:
            self._stop_resending()
            self._resending = asyncio.get_running_loop().create_task(self._resend_cancel(cancel))

    async def _resend_cancel(self, cancel: SipRequest) -> None:
        """Timer E for the CANCEL, then timer B's answer when no 487 came."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for at in self.timers.retransmit_offsets():
            await asyncio.sleep(start + at - loop.time())
            if self.final.done():
                return
            self._send(cancel)
        await asyncio.sleep(max(start + self.timers.h - loop.time(), 0.0))
        self._finish(Answer(487, "cancelled, no answer to the CANCEL", local=True))

    def _send(self, request: SipRequest) -> None:
        self.transport.send(request, self.destination)

    # --- in -------------------------------------------------------------------------------

    async def provisional(self) -> Answer:
        return await self._provisionals.get()

    def on_response(self, response: SipResponse) -> None:
        """A response with our Call-ID (the UAS routes them here)."""
        cseq = response.cseq
        method = cseq.method.upper() if cseq is not None else ""
        if method != "INVITE":
            return  # the CANCEL's 200: the INVITE's 487 is what ends it
        status = response.status_code
        if status < 200:
            self._provisional(response)
        elif status < 300:
            self._success(response)
        else:
            self._failure(response)

    def _provisional(self, response: SipResponse) -> None:
        self.proceeding = True
        if self.final.done():
            return
        if self.cancelled and not self._cancel_sent:
            self._send_cancel()  # the CANCEL that waited for this first provisional
        if response.status_code == 100:
            return
        self._take_tag(response)
        answer = Answer(response.status_code, response.reason_phrase, _sdp(response))
        with contextlib.suppress(asyncio.QueueFull):
            self._provisionals.put_nowait(answer)

    def _success(self, response: SipResponse) -> None:
        if self._ack is not None:
            self._send(self._ack)  # a resent 2xx: our ACK was lost (§13.2.2.4)
            return
        self.proceeding = True
        self._take_tag(response, force=True)
        target = _contact_uri(response.headers.get_first("contact") or "")
        if target is not None:  # the Request-URI of our ACK and BYE; they still go to the trunk
            self.dialog.remote_target = target
        self.dialog.route_set = list(reversed(response.headers.get("record-route")))
        self.dialog.confirm()
        self.answer = response
        policy = self.session_timers
        self.timer = answered(response, policy.min_se_s) if policy is not None else None
        seq = response.cseq.seq if response.cseq else 1
        host, port = self.contact
        ack = self.dialog.create_request(
            "ACK", via_host=host, via_port=port, via_transport=self.transport.name
        )
        self.dialog.local_cseq -= 1  # the ACK takes the INVITE's number, not a new one
        ack.headers.set_single("CSeq", stringify_cseq(CSeq(seq=seq, method="ACK")))
        self._ack = ack
        self._send(ack)
        self.on_answered()
        self._finish(Answer(response.status_code, response.reason_phrase, _sdp(response)))

    def _failure(self, response: SipResponse) -> None:
        self._ack_error(response)
        status = response.status_code
        retry = status in (401, 407) and self.auth is not None and not self._auth_tried
        if retry and not _refused(response, status, self._challenge):
            assert self.invite is not None
            self._auth_tried = True
            header = answer_challenge(self.auth, response, status, "INVITE", self.invite.uri)
            if header is not None and not self.cancelled:
                self._challenge, self._nonce_count = (response, status), 1
                self.proceeding = False
                self.send(header)
                return
        if status == 422 and self._longer(response) and not self.cancelled:
            self.proceeding = False
            # A new request: a trunk whose nonces serve once may challenge it again.
            self._auth_tried = False
            self.send(self._authorization())
            return
        self._finish(Answer(status, response.reason_phrase))

    def _authorization(self) -> tuple[str, str] | None:
        """The credentials for the INVITE sent again after a 422 (None: no challenge)."""
        if self._challenge is None or self.auth is None or self.invite is None:
            return None
        self._nonce_count += 1
        return answer_again(self.auth, *self._challenge, self.invite.uri, self._nonce_count)

    def _longer(self, response: SipResponse) -> bool:
        """§7.3: a 422 names the shortest interval the callee takes (Min-SE); we ask again
        with it, once, when it is longer than ours and no more than a day."""
        asked = min_se(response)
        if self.session_timers is None or self._lengthened:
            return False
        if not self._interval < asked <= MAX_INTERVAL_S:
            return False
        self._lengthened = True
        self._interval = asked
        return True

    def _ack_error(self, response: SipResponse) -> None:
        """§17.1.1.3: the ACK of a 3xx-6xx shares the INVITE's branch and the response's To."""
        invite = self.invite
        if invite is None:
            return
        ack = SipRequest(method="ACK", uri=invite.uri)
        for name in ("Via", "From", "Call-ID"):
            value = invite.headers.get_first(name)
            if value:
                ack.headers.set_single(name, value)
        ack.headers.set_single("To", response.headers.get_first("to") or "")
        seq = invite.cseq.seq if invite.cseq else 1
        ack.headers.set_single("CSeq", stringify_cseq(CSeq(seq=seq, method="ACK")))
        ack.headers.set_single("Max-Forwards", "70")
        self._send(ack)

    def _take_tag(self, response: SipResponse, *, force: bool = False) -> None:
        to = response.to_addr
        if to is not None and to.tag and (force or not self.dialog.remote_tag):
            self.dialog.remote_tag = to.tag

    def _finish(self, answer: Answer) -> None:
        self._stop_resending()
        if not self.final.done():
            if answer.status >= 300:
                self.dialog.terminate()
            self.final.set_result(answer)

    def _stop_resending(self) -> None:
        if self._resending is not None and self._resending is not asyncio.current_task():
            self._resending.cancel()
        self._resending = None

    def close(self) -> None:
        """The call is over: no timer of ours runs any more."""
        self._stop_resending()
        if not self.final.done():
            self.final.cancel()


def answer_again(
    auth: SipDigestAuth, challenge: SipResponse, status: int, uri: str, nonce_count: int
) -> tuple[str, str] | None:
    """A challenge answered again for a new INVITE: the same nonce with the next count (RFC
    7616 §3.4: a count seen before is a replay, which a trunk that tracks counts refuses) and
    a new cnonce."""
    parsed = _challenge_of(challenge, status)
    credentials = build_credentials(auth, parsed, "INVITE", uri, nonce_count=nonce_count)
    if credentials is None:
        return None
    header = "Authorization" if status == 401 else "Proxy-Authorization"
    return header, stringify_auth(credentials)


def _refused(response: SipResponse, status: int, answered: tuple[SipResponse, int] | None) -> bool:
    """A challenge with the nonce we answered last: our credentials were refused (RFC 3261
    §22.2; answered again, its nc=1 would be a replay of that nonce's first use)."""
    if answered is None:
        return False
    nonce = _challenge_of(response, status).params.get("nonce")
    return nonce == _challenge_of(*answered).params.get("nonce")


def _challenge_of(response: SipResponse, status: int) -> AuthChallenge:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return parse_auth(response.get_header(name) or "")


_ANGLED = re.compile(r"<((?:sips?|SIPS?):[^>\s]{1,500})>")


def _contact_uri(value: str) -> str | None:
    """The URI of a Contact header value, None when it holds no SIP URI."""
    found = _ANGLED.search(value)
    if found is not None:
        return found.group(1)
    uri = value.strip().split(";")[0]
    return uri if uri.lower().startswith(("sip:", "sips:")) and len(uri) <= 500 else None


def _sdp(response: SipResponse) -> SdpMessage | None:
    """The response's SDP, None without one or when it cannot be read (logged)."""
    if not response.body or (response.content_type or "").split(";")[0].strip().lower() != (
        "application/sdp"
    ):
        return None
    try:
        return parse_sdp(response.text)
    except (ValueError, IndexError) as exc:
        log.warning("sip.bad_sdp", status=response.status_code, error=str(exc)[:200])
        return None


@dataclass
class PlacedCall(GatewayCall):
    """An outbound call's dialog, shaped as the calls the UAS answers: once answered it sits
    in the UAS's table, so the callee's BYE, INFO and re-INVITEs, and our BYE, go the ways
    an inbound call's do. From is ours: the caller is the local party."""

    role: ClassVar[Refresher] = "uac"
    answer: SipResponse | None = field(default=None, repr=False)  # the callee's 2xx

    def peer_allows(self, method: str) -> bool:
        return self.answer is not None and allows(self.answer, method)

    @property
    def caller(self) -> str:
        return self.dialog.local_uri

    @property
    def callee(self) -> str:
        return self.dialog.remote_uri
