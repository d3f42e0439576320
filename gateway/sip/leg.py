"""The SIP side of one answered call: its SDP session, and the RTP stream it steers.

re-INVITEs and the ACK's late answer land here: hold stops our RTP toward the
caller (RFC 3264 §8.4), a new c=/m= moves it (§8.3.1), and a session refresh
with the same SDP gets the same answer, o= version unchanged (§8).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosipua import IncomingCall, SdpMessage, SipRequest, parse_sdp

from ..media.stream import RtpStream
from .answer import respond
from .sdp import MediaPlan, NotAcceptable, SdpSession, srtp_keys, srtp_session


class CallLeg:
    def __init__(
        self, sip: IncomingCall, sdp: SdpSession, stream: RtpStream | None, log: Any
    ) -> None:
        """`stream` None: a late offer's leg until the ACK's answer chose the codec (the
        setup builds the stream on `answered`)."""
        self.sip = sip
        self.sdp = sdp
        self.stream = stream
        self.log = log
        self.held = False
        self.answered: asyncio.Future[MediaPlan] = asyncio.get_running_loop().create_future()

    def on_reinvite(self) -> None:
        """Answer a re-INVITE: 200 with our answer, ours as an offer when it had none, or 488
        (the call goes on as it was)."""
        offer = self.sip.sdp_offer
        if self.stream is None:  # our offer in the 200 awaits its answer (the ACK)
            respond(self.sip, 491, "Request Pending")
            return
        if offer is None:
            respond(self.sip, 200, "OK", sdp=self.sdp.offer())
            self.log.info("sip.reinvite", offer=False)
            return
        previous = self.sdp.plan
        try:
            plan, answer = self.sdp.answer(offer)
        except NotAcceptable as exc:
            self.log.warning("sip.reinvite_refused", status=488, reason=str(exc))
            respond(self.sip, 488, "Not Acceptable Here")
            return
        self.apply(plan, previous)
        respond(self.sip, 200, "OK", sdp=answer)
        self.log.info("sip.reinvite", offer=True, version=answer.origin.session_version)

    def on_ack(self, request: SipRequest) -> None:
        """The ACK of our 200: it carries the answer when the 200 carried our offer.

        Raises NotAcceptable when that answer is missing or unusable: the call must end.
        """
        if not self.sdp.awaiting_answer:
            return
        try:
            answer = parse_sdp(request.text) if request.body else None
        except (ValueError, IndexError) as exc:
            raise NotAcceptable(f"malformed SDP answer in the ACK: {exc}") from None
        previous = self.sdp.plan
        plan = self.sdp.accept_answer(answer)
        self.log.info("sip.late_answer", codec=plan.codec.name, rtp_remote=_fmt(plan.remote))
        if self.stream is None:  # the setup builds the stream on it
            if not self.answered.done():
                self.answered.set_result(plan)
            return
        self.apply(plan, previous)

    def on_refresh_answer(self, answer: SdpMessage) -> None:
        """The answer to our session-refresh re-INVITE, which repeated our last SDP: the
        caller may have moved its media meanwhile; an unusable answer changes nothing."""
        previous = self.sdp.plan
        try:
            plan = self.sdp.refresh_answered(answer)
        except NotAcceptable as exc:
            self.log.warning("sip.refresh_answer_refused", reason=str(exc))
            return
        self.apply(plan, previous)

    def apply(self, plan: MediaPlan, previous: MediaPlan | None) -> None:
        assert self.stream is not None
        keys, before = srtp_keys(plan), srtp_keys(previous)
        if previous is None or keys != before:
            # New keys (a re-INVITE that re-keys, the ACK's late answer): new SRTP sessions;
            # only the inbound one when our own key stays (our answer to an offerless
            # re-INVITE offered the key in force).
            current = self.stream.srtp
            remote = plan.remote_crypto
            if keys and before and keys[:2] == before[:2] and current and remote:
                current.renew_remote(remote)
            else:
                self.stream.srtp = srtp_session(plan)
            if previous is not None and plan.remote_crypto is not None:
                self.log.info("call.srtp_rekeyed", suite=plan.remote_crypto.suite)
        if plan.remote is not None and (previous is None or plan.remote != previous.remote):
            self.stream.set_remote(plan.remote)
            if previous is not None:
                self.log.info("call.media_moved", rtp_remote=_fmt(plan.remote))
        held = not plan.send or plan.remote is None
        self.stream.set_sending(not held)
        if held != self.held:
            self.held = held
            self.log.info("call.hold" if held else "call.resume")


def _fmt(addr: tuple[str, int] | None) -> str | None:
    return f"{addr[0]}:{addr[1]}" if addr else None
