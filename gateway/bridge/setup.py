"""One call from its INVITE to its record: set up, bridged, torn down.

A call is answered only once its RTP socket, its Realtime session and its files are ready;
anything that fails before that is a `SetupFailed` carrying its SIP status (refusals.py), so
the caller gets a precise answer, never 200 then silence.

Each resource's teardown is registered on a `contextlib.AsyncExitStack` the moment it is
acquired, so a call that fails half-way tears down exactly what it got, and a teardown step
that fails does not stop the others. The stack unwinds in this order (the reverse of setup):
transcript closed, BYE (unless the caller sent one), Realtime session closed, recording
flushed, RTP socket closed and its port released; last the call leaves the registry, the
metrics count it and its record is written (before ``call.ended`` is logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import structlog
from aiosipua import IncomingCall, serialize_sdp
from aiosipua.dialog import DialogState

from ..call_record import CallRecord, RecordWriter, now_iso
from ..config import AgentConfig, GatewayConfig
from ..console.hub import Hub
from ..gc_pauses import FullCollections
from ..hooks.decide import DECLINED_REASONS, DecisionHook, Declined
from ..hooks.events import (
    Emit,
    answered_data,
    ended_data,
    no_events,
    started_data,
    with_metadata,
)
from ..hooks.incoming import Accept, forwarded_headers
from ..media.codecs import is_g711
from ..media.stream import NoPortAvailable, PortAllocator, RtpStream
from ..metrics import CallProbe, Metrics
from ..realtime.auth import Auth
from ..realtime.client import RealtimeConnectError
from ..realtime.link import RealtimeLink
from ..realtime.protocol import Dialect
from ..refusals import (
    FINAL_STATUS,
    INTERNAL_ERROR,
    PHRASES,
    RETRY_AFTER_S,
    SETUP_FAILURES,
    SetupFailed,
)
from ..routing import CallInfo, Router, Selection
from ..sip.answer import reject
from ..sip.door import Door
from ..sip.leg import CallLeg
from ..sip.sdp import (
    MediaPlan,
    NotAcceptable,
    SdpSession,
    SrtpPolicy,
    offers_several,
    srtp_session,
)
from ..sip.uas import GatewayUAS
from . import failover
from .actions import Actions
from .call import CallBridge
from .call_limits import CallLimits
from .call_timeline import open_timeline, write_timeline
from .decision import ask_hook, declined, select
from .keys_out import OutgoingKeys
from .late_offer import late_offer_media, new_stream
from .recording import Recording
from .screening import reported, screen_for
from .tools import Tools
from .transcript import TranscriptLog
from .transfers import CallTransfers, call_variables

log = structlog.get_logger("gateway")

T = TypeVar("T")


@dataclass
class ActiveCall:
    """A call in the gateway's registry, from its INVITE until its record is written."""

    id: str
    sip: IncomingCall
    uas: GatewayUAS
    received_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    end_reason: str | None = None
    leg: CallLeg | None = None
    bridge: CallBridge | None = None
    setup: CallSetup | None = None  # what the call holds, for the control API's view


@dataclass(frozen=True)
class CallServices:
    """What a call takes from the gateway when its INVITE arrives: a reload changes the next
    calls' config and routes, never those of a call in progress."""

    cfg: GatewayConfig
    router: Router
    ports: PortAllocator
    media_door: Door  # where a caller's SDP may send our RTP
    base_url: str
    dialect: Dialect
    auth: Auth
    metrics: Metrics
    records: RecordWriter
    local_ip: Callable[[str], str]  # the address for Contact and SDP towards a peer
    calls: dict[str, ActiveCall]  # the registry the call leaves at its end
    full_collections: FullCollections
    on_calls_changed: Callable[[], None]
    events: Callable[[str], Emit] = lambda call_id: no_events  # hooks.events, per call
    console: Hub | None = None  # the live console: the transcript's turns as they come
    hook: DecisionHook | None = None  # hooks.call_incoming, asked before the call is set up


async def run_call(call: ActiveCall, services: CallServices) -> None:
    """The call's task: from its INVITE to its record. A teardown step that failed (the
    others still ran) is logged here: nobody awaits this task's result."""
    setup = CallSetup(call, services)
    try:
        await setup.run()
    except Exception:
        log.exception("call.teardown_failed", call_id=call.id, sip_call_id=call.sip.call_id)


class CallSetup:
    """Sets up one call on an AsyncExitStack, runs its bridge, tears it down, records it."""

    def __init__(
        self,
        call: ActiveCall,
        services: CallServices,
        info: CallInfo | None = None,
        record: CallRecord | None = None,
    ) -> None:
        """`info` and `record`: an outbound call's own (default: what the INVITE says)."""
        self.call = call
        self.services = services
        call.setup = self
        sip = call.sip
        self.log = log.bind(call_id=call.id, sip_call_id=sip.call_id)
        self.info = info or CallInfo.from_invite(sip)
        self.record = record or CallRecord.of_invite(call.id, sip, self.info.dialed)
        self.reason = "unknown"  # how the call ended, known when the teardown starts
        self.answered_at: float | None = None
        self.opening: asyncio.Task[None] | None = None  # the record's in_progress write
        self.stream: RtpStream | None = None
        self.transcript: TranscriptLog | None = None
        self.actions: Actions | None = None
        self.bridge: CallBridge | None = None
        self.audio_format = services.cfg.realtime.audio_format  # the session's, once opened
        self.keys: OutgoingKeys | None = None  # send_dtmf, the control API's /dtmf
        # Never blocks: the event is only queued. (The record, not self: no cycle through it.)
        record = self.record
        self.emit = with_metadata(services.events(call.id), lambda: record.metadata)

    async def run(self) -> None:
        call, sip = self.call, self.call.sip
        # In this task's context: every line logged by the call, its bridge and the libraries
        # it calls (websockets) carries both ids (observability.py merges contextvars).
        structlog.contextvars.bind_contextvars(call_id=call.id, sip_call_id=sip.call_id)
        self.log.info(
            "call.received",
            caller=sip.caller,
            callee=sip.callee,
            source=f"{sip.source_addr[0]}:{sip.source_addr[1]}",
            late_offer=sip.sdp_offer is None,
            direction=self.record.direction,
        )
        self.emit("call.started", started_data(self.record, self.info, call.uas.transport.name))
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._finish)  # registered first: runs last
            reason = "unknown"
            try:
                bridge = await self._set_up(stack, await self._decide())
                reason = await bridge.run()
                self.log.info("call.bridge_ended", reason=reason, **bridge.stats.usage)
                reason = await failover.after_answer(self.services.cfg, call, reason, self.log)
            except SetupFailed as exc:
                reason = self._refuse(exc)
            except Declined as exc:
                reason = declined(sip, exc, self.record, self.log)
            except asyncio.CancelledError:
                reason = call.end_reason or "cancelled"
                if call.end_reason is None:
                    raise
            except Exception:
                reason = "internal_error"
                self.log.exception("call.failed")
                if self.answered_at is None:
                    self._abort_unanswered()
            finally:
                self.reason = call.end_reason or reason

    async def _decide(self) -> Accept | None:
        """The decision webhook's answer for this call (None: routes decide)."""
        return await ask_hook(self.call, self.services, self.info, self.record, self.log)

    def _abort_unanswered(self) -> None:
        """A failure before the answer: the caller gets a 500."""
        if self.call.sip.dialog.state == DialogState.EARLY:
            reject(self.call.sip, INTERNAL_ERROR, PHRASES[INTERNAL_ERROR])

    def _refuse(self, exc: SetupFailed) -> str:
        if failover.before_answer(self.services.cfg, self.call.sip, exc, self.log):
            return "failover_redirect"
        getattr(self.log, exc.level)(
            "call.rejected", status=exc.status, reason=exc.detail, **exc.fields
        )
        reject(self.call.sip, exc.status, exc.phrase, retry_after=exc.retry_after)
        return exc.reason

    # --- setting up ---------------------------------------------------------------------------

    async def _set_up(self, stack: contextlib.AsyncExitStack, accept: Accept | None) -> CallBridge:
        """Acquire the call's resources in order, each one's teardown registered at once, and
        answer the INVITE; the bridge is ready to run."""
        call, sip = self.call, self.call.sip
        local_ip = self.services.local_ip(sip.source_addr[0])
        sip.advertised_addr = (local_ip, call.uas.transport.local_addr[1])
        sdp = sdp_session(self.services, call.uas.transport.name, local_ip)
        plan = _negotiated(sdp.first_plan, sip)
        route = select(self.services.router, self.info, accept)
        self.record.profile, self.record.codec = route.profile, plan.codec.name
        self.log.info("call.routed", profile=route.profile)
        if sip.sdp_offer is None:  # our offer in the 200 OK: the ACK's answer picks the codec
            session, stream, plan = await late_offer_media(self, stack, sdp, plan, route)
            recording = record_on(self.services, stack, route, call.id, stream)
        else:
            stream = await self._open_stream(stack, plan)
            sdp.rtp_port = stream.port
            recording = record_on(self.services, stack, route, call.id, stream)
            session = await self._connect(stack, route, plan)
            stack.callback(self._bye)
        transcript = open_transcript(self, stack)
        bridge = self._bridge(session, stream, plan, route, transcript, recording)
        self._answer(sdp, plan, stream, transcript, recording, local_ip)
        return bridge

    async def _open_stream(self, stack: contextlib.AsyncExitStack, plan: MediaPlan) -> RtpStream:
        self.stream = stream = await open_stream(self.services, plan)
        stack.callback(self._close_stream, stream)
        return stream

    def _close_stream(self, stream: RtpStream) -> None:
        self.record.rtp = stream.summary()
        self.log.info("rtp.stats", **self.record.rtp)
        stream.close()
        self.services.ports.release(stream.port)

    async def _connect(
        self, stack: contextlib.AsyncExitStack, route: Selection, plan: MediaPlan
    ) -> RealtimeLink:
        services, started = self.services, time.monotonic()
        try:
            realtime = self._session_config(plan)
            self.audio_format = realtime.audio_format
            session = await RealtimeLink.connect(
                realtime,
                route.agent,
                base_url=services.base_url,
                dialect=services.dialect,
                auth=services.auth,
                codec=plan.codec.name,
                log=self.log,
            )
        except RealtimeConnectError as exc:
            services.metrics.realtime_error(
                f"http_{exc.status}" if exc.status else "connect_failed"
            )
            raise SetupFailed(
                "realtime_unavailable",
                exc.reason,
                retry_after=exc.retry_after,
                http_status=exc.status,
            ) from exc
        stack.push_async_callback(self._close_session, session)
        handshake_s = time.monotonic() - started
        services.metrics.handshake.observe(handshake_s)
        self.log.info(
            "realtime.session_open", session_id=session.id, handshake_ms=round(handshake_s * 1000)
        )
        return session

    async def _close_session(self, session: RealtimeLink) -> None:
        await session.close()
        self.log.info("realtime.session_closed", session_id=session.id)

    def _bye(self) -> None:
        """End the dialog unless the caller did (nothing to do before it is confirmed)."""
        if self.keys is not None:
            self.keys.close()
        if self.reason != "caller_bye":
            self.call.uas.send_bye(self.call.sip)

    def _bridge(
        self,
        session: RealtimeLink,
        stream: RtpStream,
        plan: MediaPlan,
        route: Selection,
        transcript: TranscriptLog,
        recording: Recording | None,
    ) -> CallBridge:
        call, cfg = self.call, self.services.cfg
        tools = Tools(route.agent.tools, tool_call_data(call.id, self.info, route))
        self.keys = keys = OutgoingKeys(stream, call.uas, call.sip, self.log)
        transfers = CallTransfers(
            call, self.services, route.agent.transfer, call_variables(self.info, route), self.log
        )
        transfer = partial(call.uas.transfer, call.sip)
        actions = Actions(tools, transfer, self.log, self.emit, keys.send, transfers.run)
        actions.warm_ring_s = route.agent.transfer.ring_timeout_s
        bridge = CallBridge(
            session,
            stream,
            stream.codec,
            self.audio_format,  # what the session was opened with
            route.agent,
            self.log,
            transcript,
            probe=CallProbe(self.services.metrics),
            actions=actions,
            recording=recording,
            playback_buffer_s=cfg.media.playback_buffer_s,
            limits=CallLimits.configured(cfg, stream.receiver),
            screen=screen_for(
                route,
                self.log,
                partial(reported, self.record, self.emit, self.log),
                rate=stream.codec.rate,
            ),
            timeline=open_timeline(session, stream, stream.codec) if self._timeline_on() else None,
        )
        stream.on_payload = bridge.on_payload
        self.actions, self.bridge, call.bridge = actions, bridge, bridge
        return bridge

    def _session_config(self, plan: MediaPlan) -> Any:
        # We offer (a late offer, an outbound call): the answer picks the codec later.
        cfg = self.services.cfg
        several = self.call.sip.sdp_offer is None and offers_several(cfg.media.codecs)
        return session_config(cfg, plan, several)

    def _timeline_on(self) -> bool:
        return self.services.records.directory is not None and self.services.cfg.records.timeline

    def _answer(
        self,
        sdp: SdpSession,
        plan: MediaPlan,
        stream: RtpStream,
        transcript: TranscriptLog,
        recording: Recording | None,
        local_ip: str,
    ) -> None:
        """200 OK with our SDP; the recording starts and the record says in_progress."""
        call, sip, record = self.call, self.call.sip, self.record
        if call.leg is None:  # (a late offer's 200 went out before its stream: late_offer.py)
            plan, local_sdp = _negotiated(sdp.answer, sip)
            stream.srtp = srtp_session(plan)
            call.leg = CallLeg(sip, sdp, stream, self.log)
            sip.accept(local_sdp)
        local_sdp = sdp.local
        self.answered_at = time.monotonic()
        record.answered_at = now_iso()
        if recording is not None:
            recording.start()
            record.recording = str(recording.path)
        record.transcript = transcript.path
        self.opening = self.services.records.opening(record, self.log)
        self.services.metrics.answered()
        self.log.info(
            "call.answered",
            codec=plan.codec.name,
            rtp_local=f"{local_ip}:{stream.port}",
            rtp_remote=_fmt(plan.remote),
            ptime_ms=plan.ptime_ms,
            srtp=stream.srtp.suite if stream.srtp is not None else None,
        )
        self.emit("call.answered", answered_data(record))
        if stream.srtp is None and local_sdp is not None:  # (a=crypto holds a key: never logged)
            self.log.debug("sip.sdp_local", sdp=serialize_sdp(local_sdp))

    # --- tearing down -------------------------------------------------------------------------

    async def _finish(self) -> None:
        """The last teardown step: the call leaves the registry, is counted and recorded."""
        call, services, reason = self.call, self.services, self.reason
        call.uas.forget(call.sip)
        services.calls.pop(call.sip.call_id, None)
        answered_at, stream = self.answered_at, self.stream
        duration_s = time.monotonic() - answered_at if answered_at else 0.0
        count_end(services.metrics, reason, answered_at is not None, duration_s, stream)
        setup_ms = round(((answered_at or time.monotonic()) - call.received_at) * 1000)
        # The record first: whoever reads "call.ended" can rely on the record being there.
        await services.records.final(
            self.record,
            reason,
            self.opening,
            self.log,
            setup_ms=setup_ms,
            duration_s=round(duration_s, 3),
            sip_status=None if answered_at else self.record.sip_status or FINAL_STATUS.get(reason),
            **_last_words(self.bridge, self.actions, self.transcript),
        )
        directory, timeline = services.records.directory, self.bridge and self.bridge.timeline
        if answered_at and timeline is not None and directory is not None:
            failed = partial(services.metrics.write_failed, "timeline")
            await write_timeline(timeline, directory, call.id, self.log, failed)
        self.log.info(
            "call.ended",
            reason=reason,
            duration_s=round(duration_s, 3),
            setup_ms=setup_ms,
            **_rtp_counts(stream),
        )
        self.emit("call.ended", ended_data(reason, self.record, self.transcript))
        _let_go(self)
        services.full_collections.call_ended(len(services.calls))
        services.on_calls_changed()


def _let_go(setup: CallSetup) -> None:
    """Cut the cycles among an ended call's objects (the registry's entry and its setup, the
    bridge and its parts' callbacks): reference counting frees the call now, not a full
    collection under load (gc_pauses.py; 167 ms for 300 calls' ~270 objects each)."""
    if setup.bridge is not None:
        setup.bridge.actions.detach()
        setup.bridge.uplink.release()
    setup.call.setup = setup.call.bridge = None


def sdp_session(services: CallServices, transport: str, local_ip: str) -> SdpSession:
    """The call's offer/answer state: our codecs, our address, SRTP as configured (keys only
    over TLS unless allowed otherwise)."""
    media = services.cfg.media
    srtp = SrtpPolicy.configured(media, transport)
    return SdpSession(media.codecs, local_ip, allow_to=services.media_door, srtp=srtp)


async def open_stream(services: CallServices, plan: MediaPlan) -> RtpStream:
    """The call's RTP stream on a port of the range; SetupFailed (503) when none is free."""
    media = services.cfg.media
    try:
        return await RtpStream.open(
            services.ports, services.cfg.sip.bind, lambda: new_stream(media, plan)
        )
    except NoPortAvailable as exc:
        raise SetupFailed("no_rtp_port", str(exc), retry_after=RETRY_AFTER_S) from exc


def record_on(
    services: CallServices,
    stack: contextlib.AsyncExitStack,
    route: Selection,
    call_id: str,
    stream: RtpStream,
) -> Recording | None:
    """The call's recording (see open_recording), closed at teardown."""
    recording = open_recording(services, route.agent, call_id, stream)
    if recording is not None:
        stack.push_async_callback(recording.close)
    return recording


def open_recording(
    services: CallServices, agent: AgentConfig, call_id: str, stream: RtpStream
) -> Recording | None:
    """The call's WAV file when its agent asks for one (nothing is written before the
    answer starts it), at the call's codec rate."""
    directory = services.cfg.records.recordings_dir
    if not agent.recording or directory is None:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    failed = partial(services.metrics.write_failed, "recording")
    path = directory / f"{stamp}_{call_id}.wav"
    return Recording(path, stream.frame_samples, failed, stream.codec.rate)


def _console_turns(hub: Hub | None, call_id: str) -> Callable[[dict[str, Any]], None] | None:
    """The live console's ear for the call's transcript (None: no console)."""
    return partial(hub.turn, call_id) if hub is not None else None


def session_config(cfg: GatewayConfig, plan: MediaPlan, several: bool = False) -> Any:
    """The realtime section a call's sessions open with: only G.711 can pass through to the
    service (audio_format g711); a call in G.722 or Opus talks PCM16 at 24 kHz, and so does
    one whose session opens before the answer to our offer of `several` codecs names one."""
    if is_g711(plan.codec) and not several:
        return cfg.realtime
    return cfg.realtime.model_copy(update={"audio_format": "pcm16"})


def open_transcript(setup: CallSetup, stack: contextlib.AsyncExitStack) -> TranscriptLog:
    """The call's transcript file, closed with the call's end reason at teardown."""
    sip = setup.call.sip
    transcript = TranscriptLog.open(
        setup.services.cfg.records.transcripts_dir,
        setup.call.id,
        setup.log,
        sip_call_id=sip.call_id,
        caller=sip.caller,
        callee=sip.callee,
        on_failure=partial(setup.services.metrics.write_failed, "transcript"),
        on_turn=_console_turns(setup.services.console, setup.call.id),
    )
    setup.transcript = transcript
    stack.callback(lambda: transcript.close(setup.reason))
    return transcript


def _rtp_counts(stream: RtpStream | None) -> dict[str, int]:
    """Packets in and out; rtp_in 0 on an answered call means the caller's audio never
    reached us (firewall, NAT; README, Troubleshooting)."""
    if stream is None:
        return {"rtp_in": 0, "rtp_out": 0}
    return {"rtp_in": stream.stats.packets_in, "rtp_out": stream.stats.packets_out}


def _last_words(
    bridge: CallBridge | None, actions: Actions | None, transcript: TranscriptLog | None
) -> dict[str, Any]:
    """What an answered call adds to its record: token usage, tool calls, the transcript."""
    if bridge is None or actions is None or transcript is None:
        return {}
    return {
        "usage": dict(bridge.stats.usage),
        "tool_calls": list(actions.tool_calls),
        "transfers": list(actions.transfers),
        "transcript": transcript.path,
    }


def count_end(
    metrics: Metrics, reason: str, answered: bool, duration_s: float, stream: RtpStream | None
) -> None:
    """The metrics of a call that ended, answered or not."""
    if stream is not None:
        metrics.rtp(stream.stats)
    if reason.startswith("realtime_closed:") and not reason.endswith(":1000"):
        metrics.realtime_error(f"close_{reason.split(':', 1)[1]}")
    if answered:
        metrics.ended(reason, duration_s)
    elif reason in SETUP_FAILURES or reason in DECLINED_REASONS:
        metrics.rejected(reason)
    elif reason in ("caller_cancel", "shutdown", "drain_timeout"):
        metrics.unanswered("cancelled", reason)
    elif FINAL_STATUS.get(reason, 0) // 100 == 3:
        metrics.unanswered("redirected", reason)
    else:
        metrics.unanswered("failed", reason)


def tool_call_data(call_id: str, info: CallInfo, route: Selection) -> dict[str, Any]:
    """What a webhook tool learns about the call (the `call` object of its request): who
    calls whom, the INVITE's X- headers (bounded as for the decision webhook), and what the
    decision webhook answered (variables, metadata)."""
    headers = forwarded_headers(info.headers)
    return {
        "call_id": call_id,
        "caller": info.caller,
        "caller_name": info.caller_name,
        "dialed": info.dialed,
        "profile": route.profile,
        "headers": {name: value for name, value in headers.items() if name.startswith("x-")},
        "variables": dict(route.variables),
        "metadata": dict(route.metadata),
    }


def _negotiated(step: Callable[[Any], T], sip: IncomingCall) -> T:
    """An SDP step on the caller's offer; an offer we cannot answer is a 488."""
    try:
        return step(sip.sdp_offer)
    except NotAcceptable as exc:
        raise SetupFailed("not_acceptable", str(exc), level="warning") from exc


def _drop(payload: bytes) -> None:
    """RTP that arrives before the bridge exists (early media from the caller)."""


def _fmt(addr: tuple[str, int] | None) -> str | None:
    return f"{addr[0]}:{addr[1]}" if addr else None
