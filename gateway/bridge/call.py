"""One call's bridge between the RTP leg and its Realtime session.

Tasks live as long as the call: downlink (model events to playback), the pacer (playback
to RTP), and watchers (the agent hanging up, the caller's RTP stopping, the call's time
limits); the caller's audio
goes to the model straight from the RTP socket's callback (uplink), without a task hop per
packet. The first to end (or the uplink failing) ends the call; the rest is cancelled with
it. Playback and its accounting, the model audio converter, the transcript, echo
suppression and local pre-emption are objects of their own; this module only wires events
between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed

from ..config import AgentConfig
from ..media.g711 import G711
from ..media.resample import Resampler
from ..media.stream import RtpStream
from ..metrics import CallProbe
from ..realtime import protocol as rt
from ..realtime.link import RealtimePort
from .actions import Actions
from .call_limits import CallLimits
from .echo import EchoSuppressor
from .local_vad import LocalBargeIn
from .model_audio import ModelAudio
from .playback import MAX_BUFFER_S, ItemAccount, ItemKey, Playback
from .recording import Recording
from .transcript import TranscriptLog

UPLINK_BACKLOG_FRAMES = 50  # 1 s of caller audio may wait for a slow socket, then it is dropped
MALFORMED_LOG_EVERY = 100  # a service sending garbage gets a log line per this many frames
ERRORS_LOGGED_IN_FULL = 10  # service error events of a call logged each, before the above
MAX_LOGGED_MESSAGE = 500  # characters of a service error's message in the log


class CallEnded(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class CallStats:
    uplink_dropped: int = 0
    deltas_dropped: int = 0
    barge_ins: int = 0
    local_barge_ins: int = 0
    local_unconfirmed: int = 0
    responses: int = 0
    service_errors: int = 0
    malformed_events: int = 0
    playback_dropped_ms: int = 0
    usage: dict[str, int] = field(default_factory=dict)


class CallBridge:
    def __init__(
        self,
        session: RealtimePort,
        rtp: RtpStream,
        codec: G711,
        audio_format: str,
        agent: AgentConfig,
        log: Any,
        transcript: TranscriptLog | None = None,
        probe: CallProbe | None = None,
        actions: Actions | None = None,
        recording: Recording | None = None,
        *,
        playback_buffer_s: float = MAX_BUFFER_S,
        rtp_timeout_s: float = 0.0,
        limits: CallLimits | None = None,
    ) -> None:
        self.session = session
        self.rtp = rtp
        self.codec = codec
        self.passthrough = audio_format == "g711"
        self.greeting = agent.greeting
        self.log = log
        self.transcript = transcript or TranscriptLog(None, log)
        self.playback = Playback(
            rtp.frame_samples,
            on_finished=self.transcript.agent_played,
            max_buffer_s=playback_buffer_s,
        )
        self._overflowing: ItemKey | None = None  # the item whose audio is being dropped
        self.rtp_timeout_s = rtp_timeout_s
        self.limits = limits
        self._limits_changed = asyncio.Event()
        self.audio = ModelAudio(self.playback, codec, self.passthrough)
        echo, local = agent.echo_suppression, agent.local_barge_in
        self.echo = EchoSuppressor(echo.echo_loss_db, echo.tail_ms, rtp.ptime_ms) if echo else None
        self.local = (
            LocalBargeIn(local.threshold, local.min_speech_ms, local.confirm_ms) if local else None
        )
        self._interrupts = getattr(agent.turn_detection, "interrupt_response", False)
        self.actions = actions or Actions(session, None, agent.dtmf, None, log)
        self.recording = recording
        self._hang_up_due = asyncio.Event()  # the agent hung up and its last words were heard
        rtp.on_dtmf = self._on_key
        rtp.on_flood = lambda: log.warning("rtp.flood", limit_pps=rtp.flood_limit_pps)
        rtp.on_hold = self._on_hold
        rtp.on_peer_learned = lambda addr: log.info(
            "rtp.source_learned", rtp_remote=f"{addr[0]}:{addr[1]}"
        )
        self._up = Resampler(8000, rt.PCM16_RATE)
        self.probe = probe or CallProbe()  # metrics hooks (gateway/metrics.py)
        self._uplink_failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._active_response: str | None = None
        self._cancelled: set[str] = set()  # responses whose late deltas are dropped
        self._held_at: float | None = None  # local pre-emption waiting for the service
        self._unhold: asyncio.TimerHandle | None = None
        self.stats = CallStats()

    def on_payload(self, payload: bytes) -> None:
        """From the RTP socket: the caller's audio, on its way to the model at once."""
        try:
            self.probe.uplink_taken(time.monotonic())
            audio = self._caller_audio(payload)
            if not audio:
                return
            if self.session.send_audio(audio, UPLINK_BACKLOG_FRAMES):
                self.probe.uplink_sent()
            else:
                self.stats.uplink_dropped += 1
        except Exception as exc:  # this call's failure alone: it ends the call, not the socket
            if not self._uplink_failed.done():
                self._uplink_failed.set_exception(exc)

    def next_frame(self) -> np.ndarray | None:
        """The pacer's frame source: playback, seen on its way out (echo, recording)."""
        frame = self.playback.next_frame()
        if frame is not None and self.probe.downlink_since is not None:
            self.probe.audio_played()
        if self.echo is not None:
            self.echo.far_end(frame)
        if self.recording is not None:
            self.recording.tick(frame)
        if (
            frame is None
            and self.actions.hang_up_requested
            and not self.actions.responding
            and not self.playback.buffered_ms
        ):
            self._hang_up_due.set()
        return frame

    def _on_key(self, digit: str, duration_ms: int) -> None:
        if self.actions.key(digit):  # a key beyond the keypad's rate is dropped, not logged
            self.log.info("call.dtmf", digit=digit, duration_ms=duration_ms)

    def key(self, digit: str, source: str) -> None:
        """A key press signalled outside RTP (SIP INFO)."""
        if self.actions.key(digit):
            self.log.info("call.dtmf", digit=digit, source=source)

    async def _until_hang_up(self) -> None:
        """The agent ends the call: after its last words (end_call), or now (transferred)."""
        waits = [
            asyncio.ensure_future(self._hang_up_due.wait()),
            asyncio.ensure_future(self.actions.hang_up_now.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        raise CallEnded(self.actions.end_reason)

    async def run(self) -> str:
        """Bridge until one side ends; returns the end reason."""
        tasks = [
            asyncio.create_task(self._uplink(), name="uplink"),
            asyncio.create_task(self._downlink_loop(), name="downlink"),
            asyncio.create_task(
                self.rtp.pace(self, self.probe.metrics.pacer_lateness.observe), name="pacer"
            ),
            asyncio.create_task(self._until_hang_up(), name="hang_up"),
        ]
        if self.rtp_timeout_s:
            tasks.append(asyncio.create_task(self._rtp_timeout(), name="rtp_timeout"))
        if self.limits is not None:
            self.limits.answered(asyncio.get_running_loop().time())
            tasks.append(asyncio.create_task(self._time_limits(self.limits), name="time_limits"))
        try:
            if self.greeting:
                await self.session.send(rt.CreateResponse(self.greeting))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            task = done.pop()
            exc = task.exception()
            if isinstance(exc, CallEnded):
                return exc.reason
            if isinstance(exc, ConnectionClosed):
                return f"realtime_closed:{exc.rcvd.code if exc.rcvd else 1006}"
            if exc is not None:
                self.log.error("call.bridge_failed", task=task.get_name(), error=repr(exc))
                return f"internal_error:{task.get_name()}"
            return f"{task.get_name()}_ended"
        except ConnectionClosed as exc:
            return f"realtime_closed:{exc.rcvd.code if exc.rcvd else 1006}"
        finally:
            for task in tasks:
                task.cancel()
            if self._unhold is not None:
                self._unhold.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.actions.close()
            self.playback.interrupt()  # what was playing ends here, for the transcript

    # --- caller -> model ----------------------------------------------------------------------

    async def _uplink(self) -> None:
        """Ends the call when the uplink (``on_payload``) fails."""
        await self._uplink_failed

    async def _rtp_timeout(self) -> None:
        silent = await self.rtp.rtp_timeout(self.rtp_timeout_s)
        self.log.warning("call.rtp_timeout", silent_s=round(silent, 1))
        raise CallEnded("rtp_timeout")

    def _on_hold(self, held: bool) -> None:
        """From the stream: the caller put the call on hold, or resumed it."""
        if self.limits is None:
            return
        if held:
            self.limits.hold(asyncio.get_running_loop().time())
        else:
            self.limits.resume()
        self._limits_changed.set()

    async def _time_limits(self, limits: CallLimits) -> None:
        """Ends the call at its longest duration, or when a hold has lasted too long."""
        loop = asyncio.get_running_loop()
        while (reason := limits.expired(loop.time())) is None:
            self._limits_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(limits.deadline()[0]):
                    await self._limits_changed.wait()
        self.log.warning(
            "call.time_limit",
            reason=reason,
            max_call_s=limits.max_call_s,
            hold_timeout_s=limits.hold_timeout_s,
            held_s=round(limits.held_for(loop.time()), 1),
        )
        raise CallEnded(reason)

    def _caller_audio(self, payload: bytes) -> bytes:
        """The caller's G.711 in the session's format, past echo suppression and local VAD."""
        if self.passthrough and self.echo is None and self.local is None and not self.recording:
            return payload
        pcm = self.codec.decode(payload)
        if self.recording is not None:
            self.recording.caller(pcm)
        if self.echo is not None and not self.echo.near_end(pcm):
            pcm = np.zeros_like(pcm)
            payload = bytes([self.codec.silence]) * len(payload)
        if self.local is not None and self.local.onset(pcm):
            self._pre_empt()
        return payload if self.passthrough else self._up.process(pcm).tobytes()

    def _pre_empt(self) -> None:
        """The caller started talking (heard here): hold playback until the service confirms."""
        if not self.playback.buffered_ms or self.playback.held:
            return
        assert self.local is not None
        self.playback.hold()
        self._held_at = time.monotonic()
        self.stats.local_barge_ins += 1
        self._unhold = asyncio.get_running_loop().call_later(self.local.confirm_s, self._resume)
        self.log.debug("call.local_barge_in")

    def _resume(self) -> None:
        self.playback.release()
        self._held_at = None
        self.stats.local_unconfirmed += 1
        self.log.info("call.local_barge_in_unconfirmed")

    # --- model -> caller ----------------------------------------------------------------------

    async def _downlink_loop(self) -> None:
        async for event in self.session.events():
            await self._on_event(event)
        code = self.session.close_code
        raise CallEnded(f"realtime_closed:{code}")

    async def _on_event(self, event: rt.ServerEvent) -> None:
        match event:
            case rt.AudioDelta():
                self.rtp.poll_pacer()  # a due packet goes out before this delta's resampling
                if event.response_id in self._cancelled:
                    self.stats.deltas_dropped += 1
                    return
                key = ItemKey(event.response_id, event.item_id, event.content_index)
                self.probe.audio_arrived(playback_idle=self.playback.buffered_ms == 0)
                dropped = self.playback.dropped_samples
                self.audio.delta(key, event.audio)
                if self.playback.dropped_samples != dropped:
                    self._overflow(key, self.playback.dropped_samples - dropped)
            case rt.AudioDone():
                if event.response_id not in self._cancelled:
                    self.audio.done(ItemKey(event.response_id, event.item_id, event.content_index))
            case rt.SpeechStarted():
                self.transcript.speech_started(event.item_id)
                if self._interrupts:
                    await self._barge_in()
            case rt.ResponseStarted():
                self.actions.response_started()
                self._active_response = event.response_id
                self.stats.responses += 1
            case rt.ResponseDone():
                self._on_response_done(event)
                self.actions.response_done()
            case rt.FunctionCall():
                self.actions.function_call(event)
            case rt.Transcript(role="caller"):
                self.transcript.caller_said(event.item_id, event.text)
            case rt.Transcript():
                self.transcript.agent_said(event.item_id, event.text)
            case rt.TranscriptDelta():
                self.transcript.agent_delta(event.item_id, event.delta)
            case rt.Malformed():
                self.stats.malformed_events += 1
                self.probe.realtime_error("malformed_event")
                if self.stats.malformed_events % MALFORMED_LOG_EVERY == 1:
                    self.log.warning(
                        "realtime.malformed_event",
                        reason=event.reason,
                        excerpt=event.excerpt,
                        count=self.stats.malformed_events,
                    )
            case rt.ServiceError():
                self.stats.service_errors += 1
                self.probe.realtime_error(event.code or "no_code")
                # The first few in full, then one per MALFORMED_LOG_EVERY, cut short: a service
                # that sends errors in a loop, or megabytes of message, cannot flood the log.
                n = self.stats.service_errors
                if n <= ERRORS_LOGGED_IN_FULL or n % MALFORMED_LOG_EVERY == 0:
                    level = self.log.debug if event.benign else self.log.warning
                    level(
                        "realtime.error",
                        code=str(event.code)[:64] if event.code else event.code,
                        message=event.message[:MAX_LOGGED_MESSAGE],
                        count=self.stats.service_errors,
                    )
            case _:
                pass

    def _overflow(self, key: ItemKey, samples: int) -> None:
        """Model audio beyond media.playback_buffer_s was dropped: counted, logged per item."""
        ms = samples / 8
        self.stats.playback_dropped_ms += round(ms)
        self.probe.playback_dropped(ms / 1000)
        if key != self._overflowing:
            self._overflowing = key
            self.log.warning(
                "playback.overflow",
                response_id=key.response_id,
                item_id=key.item_id,
                buffered_s=round(self.playback.buffered_ms / 1000, 1),
                limit_s=self.playback.max_buffer_s,
            )

    def _on_response_done(self, event: rt.ResponseDone) -> None:
        if self._active_response == event.response_id:
            self._active_response = None
        self._cancelled.discard(event.response_id)  # no delta of it can follow
        # No more audio for its items, even if an output_audio.done was never sent.
        for key in [k for k in self.playback.items if k.response_id == event.response_id]:
            self.audio.done(key)
        self.probe.response_done(event.usage)
        for name, value in event.usage.items():
            if isinstance(value, int):
                self.stats.usage[name] = self.stats.usage.get(name, 0) + value
        self.log.info("realtime.response_done", status=event.status, reason=event.reason)

    async def _barge_in(self) -> None:
        """The caller talks over the model: stop playback now, tell the model what was heard."""
        since = time.monotonic()
        cut = self.playback.interrupt()  # the very next pacer tick sends silence
        self.probe.flushed(since, cut_audio=bool(cut))
        self.audio.cut()
        if self._unhold is not None:
            self._unhold.cancel()
            self._unhold = None
        if self._held_at is not None:
            lead_ms = round((time.monotonic() - self._held_at) * 1000)
            self.log.info("call.local_barge_in_confirmed", lead_ms=lead_ms)
            self._held_at = None
        events: list[rt.ClientCommand] = []
        if self._active_response is not None:
            # The service may have cancelled it already (interrupt_response): then this
            # only earns a benign response_cancel_not_active.
            self._cancelled.add(self._active_response)
            events.append(rt.CancelResponse())
            self._active_response = None
        for item in cut:
            events.append(rt.Truncate(item.key.item_id, item.heard_ms, item.key.content_index))
            self.session.conversation.cut(item.key.item_id, item.heard_ms, item.received_ms)
            self._log_cut(item)
        if events:
            self.stats.barge_ins += 1
        for text in events:
            await self.session.send(text)

    def _log_cut(self, item: ItemAccount) -> None:
        self.log.info(
            "call.barge_in",
            response_id=item.key.response_id,
            item_id=item.key.item_id,
            heard_ms=item.heard_ms,
            received_ms=round(item.received_ms),
        )
