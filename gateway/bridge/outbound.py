"""One outbound call from its INVITE to its record: an inbound call's setup (setup.py) with
the other half of the offer/answer.

What differs from an inbound call is only how it gets to its answer: we offer (our RTP port
bound first), the Realtime session opens while the callee's phone rings (so the model is
ready at 200 OK), a 183 with SDP starts the RTP stream at once (early media), the ring
timeout CANCELs, and a call that is never answered ends with ``call.failed`` (its SIP status
and a reason word) instead of an answer of ours. From the 200 OK on, it is a call like any
other: the same bridge, core, tools, records, events and teardown (`CallSetup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiosipua import SdpMessage
from aiosipua.auth import SipDigestAuth

from ..call_record import CallRecord, now_iso
from ..hooks.events import answered_data
from ..hooks.incoming import Accept
from ..media.stream import NoPortAvailable, RtpStream, bind_rtp_socket
from ..realtime.link import RealtimeLink
from ..refusals import RETRY_AFTER_S, SetupFailed
from ..routing import CallInfo, Selection
from ..sip.invite_client import Answer, InviteClient
from ..sip.leg import CallLeg
from ..sip.sdp import (
    MediaPlan,
    NotAcceptable,
    SdpSession,
    offers_several,
)
from .call import CallBridge
from .late_offer import stream_on
from .setup import (
    ActiveCall,
    CallServices,
    CallSetup,
    open_recording,
    open_transcript,
    sdp_session,
    session_config,
)
from .trunk import NotAnswered, placed_call, reach_trunk

__all__ = ["NotAnswered", "OutboundSetup", "Placement", "placed_call", "reach_trunk"]

CONNECT_GRACE_S = 10.0  # how long after 200 OK the Realtime session may still take to open


@dataclass(frozen=True)
class Placement:
    """What an outbound call was asked to be (POST /v1/calls), checked by the guard."""

    to: str
    caller_id: str
    route: Selection
    ring_timeout_s: float
    password: str | None = None  # the trunk's, from the environment
    metadata: dict[str, Any] = field(default_factory=dict)


def outcome(answer: Answer, cancelled: bool) -> str:
    """The reason word of a final response that is not a 2xx."""
    status = answer.status
    if answer.local and not cancelled:
        return "unreachable"
    if status in (486, 600):
        return "busy"
    if status in (408, 480) or cancelled:
        return "no_answer"
    return "rejected"


class OutboundSetup(CallSetup):
    """Sets up one outbound call, runs its bridge like an inbound one, records it."""

    def __init__(self, call: ActiveCall, services: CallServices, placement: Placement) -> None:
        sip = call.sip
        info = CallInfo(dialed=placement.to, to=placement.to, caller=placement.caller_id)
        record = CallRecord(
            call.id,
            sip.call_id,
            placement.caller_id,
            placement.to,
            f"{sip.source_addr[0]}:{sip.source_addr[1]}",
            dialed=placement.to,
            direction="outbound",
            metadata=dict(placement.metadata),
        )
        super().__init__(call, services, info, record)
        self.placement = placement
        self.client: InviteClient | None = None
        self._sock: socket.socket | None = None
        self._reported = False  # call.failed was emitted
        self._port = 0

    def _session_config(self, plan: MediaPlan) -> Any:
        """Opened while ringing, before the answer picks the codec: PCM16 unless we offer
        one codec only (G.711 then passes through when realtime.audio_format says g711)."""
        cfg = self.services.cfg
        return session_config(cfg, plan, offers_several(cfg.media.codecs))

    async def _decide(self) -> Accept | None:
        return None  # no decision webhook: whoever asked for the call chose its profile

    def _abort_unanswered(self) -> None:
        if self.client is not None:
            self.client.cancel()

    def _refuse(self, exc: SetupFailed) -> str:
        """Not answered, or failed before the answer: ``call.failed`` says why."""
        status = exc.status if isinstance(exc, NotAnswered) else None
        self.record.sip_status = status
        if self.client is not None:
            self.client.cancel()
        self._failed(exc.reason, status, exc.detail)
        return exc.reason

    def _failed(self, reason: str, status: int | None, detail: str) -> None:
        self._reported = True
        self.log.warning("call.failed", reason=reason, status=status, detail=detail)
        data = {"reason": reason, "status": status, "detail": detail, "to": self.placement.to}
        self.emit("call.failed", data)

    async def _finish(self) -> None:
        """Every call that was not answered has its call.failed: also one ended while it
        rang (the API's hang-up, a shutdown) or by a failure of ours."""
        if self.answered_at is None and not self._reported:
            self._failed(self.reason, None, "ended before it was answered")
        await super()._finish()
        self.client = None  # it calls back here (on_answered): no cycle outlives the call

    # --- setting up -------------------------------------------------------------------------

    async def _set_up(self, stack: contextlib.AsyncExitStack, accept: Accept | None) -> CallBridge:
        call, cfg, route = self.call, self.services.cfg, self.placement.route
        sip = call.sip
        assert cfg.sip.outbound is not None
        trunk = await reach_trunk(cfg.sip.outbound, call.uas.transport)
        local_ip = self.services.local_ip(trunk[0])
        sip.source_addr = trunk
        sip.advertised_addr = (local_ip, call.uas.transport.local_addr[1])
        sdp = sdp_session(self.services, call.uas.transport.name, local_ip)
        self._bind(stack)
        sdp.rtp_port = self._port
        offered = sdp.first_plan(None)
        self.record.profile = route.profile
        self.log.info("call.routed", profile=route.profile, amd=route.amd)
        # The session opens while the phone rings; its failure fails the call (CANCEL).
        session_task = asyncio.ensure_future(self._connect(stack, route, offered))
        stack.push_async_callback(_cancelled, session_task)
        try:
            offer = sdp.offer()
        except NotAcceptable as exc:  # media.srtp required, and no TLS to carry the keys
            raise SetupFailed("not_acceptable", str(exc), level="warning") from exc
        client = self._invite(stack, offer, trunk)
        answer, stream, plan = await self._ring(stack, client, sdp, session_task)
        session = await _session(session_task)
        plan, stream = self._media_at_answer(stack, sdp, answer, stream, plan)
        recording = open_recording(self.services, route.agent, call.id, stream)
        if recording is not None:
            stack.push_async_callback(recording.close)
        transcript = open_transcript(self, stack)
        bridge = self._bridge(session, stream, plan, route, transcript, recording)
        self._answered(sdp, plan, stream, recording, transcript, local_ip)
        return bridge

    def _bind(self, stack: contextlib.AsyncExitStack) -> None:
        try:
            self._sock, self._port = bind_rtp_socket(
                self.services.ports, self.services.cfg.sip.bind
            )
        except NoPortAvailable as exc:
            raise SetupFailed("no_rtp_port", str(exc), retry_after=RETRY_AFTER_S) from exc
        stack.callback(self._unbind)

    def _unbind(self) -> None:
        """The socket no stream took (a call that failed before its media started)."""
        if self.stream is None and self._sock is not None:
            self._sock.close()
            self.services.ports.release(self._port)

    def _invite(
        self, stack: contextlib.AsyncExitStack, offer: SdpMessage, trunk: tuple[str, int]
    ) -> InviteClient:
        call, placement = self.call, self.placement
        outbound = self.services.cfg.sip.outbound
        assert outbound is not None
        auth = None
        if outbound.auth is not None and placement.password is not None:
            auth = SipDigestAuth(outbound.auth.username, placement.password)
        client = InviteClient(
            call.uas.transport,
            call.uas.timers,
            from_uri=call.sip.dialog.local_uri,
            to_uri=call.sip.dialog.remote_uri,
            destination=trunk,
            contact=call.sip.advertised_addr or trunk,
            offer=offer,
            auth=auth,
            user_agent=self.services.cfg.sip.user_agent or None,
            dialog=call.sip.dialog,
            session_timers=call.uas.session_policy,
        )
        self.client = client
        client.on_answered = self._dialog_up
        call.uas.invite_clients[call.sip.call_id] = client
        stack.callback(self._forget_client, client)
        stack.callback(self._bye)  # runs before the above: a 200 that came too late is ended
        client.send()
        self.log.info("call.dialing", to=placement.to, trunk=f"{trunk[0]}:{trunk[1]}")
        return client

    def _dialog_up(self) -> None:
        """The 2xx is ACKed: the callee's BYE, INFO and re-INVITEs now reach the call, and
        the session timer its 2xx put in force runs (we refresh, or watch the callee's)."""
        assert self.client is not None  # the client calls this
        self.call.uas.placed_call_up(self.call.sip, self.client)

    def _forget_client(self, client: InviteClient) -> None:
        """The call is over; still ringing (the API's hang-up, a shutdown), it is CANCELled
        and the client stays until the 487 is ACKed (bounded by timer B)."""
        client.cancel()
        clients, key = self.call.uas.invite_clients, self.call.sip.call_id

        def forget(_: object = None) -> None:
            client.close()
            if clients.get(key) is client:
                del clients[key]

        if client.final.done():
            forget()
        else:
            client.final.add_done_callback(forget)

    async def _ring(
        self,
        stack: contextlib.AsyncExitStack,
        client: InviteClient,
        sdp: SdpSession,
        session_task: asyncio.Future[RealtimeLink],
    ) -> tuple[Answer, RtpStream | None, MediaPlan | None]:
        """Until the final response: 1xx logged, early media started, the session's failure
        or the ring timeout turned into a CANCEL. Raises NotAnswered unless it is a 2xx."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.placement.ring_timeout_s
        stream: RtpStream | None = None
        plan: MediaPlan | None = None
        timed_out = False
        while not client.final.done():
            progress = asyncio.ensure_future(client.provisional())
            waits: set[asyncio.Future[Any]] = {client.final, progress}
            if not session_task.done():
                waits.add(session_task)
            remaining = deadline - loop.time() if not timed_out else None
            try:
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                progress.cancel()
            if session_task.done() and session_task.exception() is not None:
                client.cancel()
                raise session_task.exception()  # type: ignore[misc]
            if progress.done() and not progress.cancelled():
                stream, plan = self._progress(stack, sdp, progress.result(), stream, plan)
            if not timed_out and loop.time() >= deadline and not client.final.done():
                timed_out = True
                self.log.info("call.ring_timeout", after_s=self.placement.ring_timeout_s)
                client.cancel()
        answer = client.final.result()
        if answer.status < 300 and client.cancelled:  # the 2xx crossed our CANCEL: BYE
            detail = f"{answer.status} after our CANCEL at {self.placement.ring_timeout_s:g} s"
            raise NotAnswered("no_answer", None, f"{detail}: ended with a BYE")
        if answer.status >= 300:
            reason = outcome(answer, client.cancelled)
            detail = f"{answer.status} {answer.reason}".strip()
            if timed_out:
                detail = f"no answer within {self.placement.ring_timeout_s:g} s ({detail})"
            raise NotAnswered(reason, None if answer.local else answer.status, detail)
        return answer, stream, plan

    def _progress(
        self,
        stack: contextlib.AsyncExitStack,
        sdp: SdpSession,
        answer: Answer,
        stream: RtpStream | None,
        plan: MediaPlan | None,
    ) -> tuple[RtpStream | None, MediaPlan | None]:
        self.log.info("call.progress", status=answer.status, early_media=answer.sdp is not None)
        if answer.sdp is None or stream is not None:
            return stream, plan
        try:
            plan = sdp.accept_answer(answer.sdp)
        except NotAcceptable as exc:
            self.log.warning("call.early_media_refused", reason=str(exc))
            sdp.offer()  # still waiting for an answer to the same offer
            return None, None
        return self._start_stream(stack, plan), plan

    def _start_stream(self, stack: contextlib.AsyncExitStack, plan: MediaPlan) -> RtpStream:
        """The RTP stream on the bound socket: from early media, or from the 200 OK."""
        assert self._sock is not None
        self.stream = stream = stream_on(self.services, self._sock, self._port, plan)
        stack.callback(self._close_stream, stream)
        return stream

    def _media_at_answer(
        self,
        stack: contextlib.AsyncExitStack,
        sdp: SdpSession,
        answer: Answer,
        stream: RtpStream | None,
        plan: MediaPlan | None,
    ) -> tuple[MediaPlan, RtpStream]:
        """The 200 OK's SDP: the answer to our offer, or (after early media) where the
        callee's RTP now comes from. NotAcceptable is a setup failure (BYE)."""
        try:
            if stream is None or plan is None:
                plan = sdp.accept_answer(answer.sdp)
                return plan, self._start_stream(stack, plan)
            if answer.sdp is not None:
                moved = sdp.refresh_answered(answer.sdp)
                if moved.remote is not None and moved.remote != stream.remote:
                    stream.set_remote(moved.remote)
                plan = moved
            return plan, stream
        except NotAcceptable as exc:
            raise SetupFailed("not_acceptable", str(exc), level="warning") from exc

    def _answered(
        self,
        sdp: SdpSession,
        plan: MediaPlan,
        stream: RtpStream,
        recording: Any,
        transcript: Any,
        local_ip: str,
    ) -> None:
        """200 OK came: the call counts as answered, as an inbound call's 200 does."""
        call, record = self.call, self.record
        call.leg = CallLeg(call.sip, sdp, stream, self.log)
        self.answered_at = time.monotonic()
        record.answered_at = now_iso()
        if recording is not None:
            recording.start()
            record.recording = str(recording.path)
        record.transcript = transcript.path
        record.codec = plan.codec.name
        self.opening = self.services.records.opening(record, self.log)
        self.services.metrics.answered()
        self.log.info(
            "call.answered",
            direction="outbound",
            codec=plan.codec.name,
            rtp_local=f"{local_ip}:{stream.port}",
            rtp_remote=f"{plan.remote[0]}:{plan.remote[1]}" if plan.remote else None,
            ptime_ms=plan.ptime_ms,
        )
        self.emit("call.answered", answered_data(record))


async def _session(task: asyncio.Future[RealtimeLink]) -> RealtimeLink:
    """The session opened while ringing (waited for a little longer when it is late)."""
    try:
        async with asyncio.timeout(CONNECT_GRACE_S):
            return await asyncio.shield(task)
    except TimeoutError:
        raise SetupFailed("realtime_unavailable", "the Realtime session did not open") from None


async def _cancelled(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _drop(payload: bytes) -> None:
    """RTP heard before the bridge exists (early media: ringback, announcements)."""
