"""One call's bridge between the RTP leg and its Realtime session: the asyncio shell around
:class:`~.core.CallCore`.

The core decides what happens on the call; this module feeds it (server events, keys, the
pacer asking for frames, time) and runs the commands it returns: commands for the model go to
the link in the order given (one writer task), tools and transfers run in tasks of their own
(:class:`~.actions.Actions`), a hang-up ends the call. One timer ticks the core at its
deadline (a key entry's pause, the call's time limits, the RTP timeout): the shell feeds time
and events, the core decides. Tasks live as long as the call: downlink (model events into the
core), the writer, the pacer (playback to RTP), and a watcher for the core's hang-up. The
caller's audio goes to the model straight from the RTP socket's callback (uplink,
:class:`~.uplink.CallerAudio`), without a task hop per packet. The first to end (or the uplink
failing) ends the call; the rest is cancelled with it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed

from ..config import AgentConfig
from ..console.tap import CallTap
from ..media.codecs import Codec, is_g711
from ..media.stream import RtpStream
from ..metrics import CallProbe
from ..realtime import protocol as rt
from ..realtime.link import RealtimePort
from .actions import Actions
from .call_limits import CallLimits
from .core import CallCore, CallStats, Command, HangUp, RunTool, Transfer
from .model_audio import ModelAudio
from .playback import MAX_BUFFER_S, Playback
from .recording import Recording
from .screening import AnswerScreen, Decided, LeaveMessage
from .timeline import Timeline
from .transcript import TranscriptLog
from .uplink import CallerAudio

__all__ = ["CallBridge", "CallEnded", "CallStats", "RealtimePort"]

UPLINK_BACKLOG_FRAMES = 50  # 1 s of caller audio may wait for a slow socket, then it is dropped


class CallEnded(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallBridge:
    def __init__(
        self,
        session: RealtimePort,
        rtp: RtpStream,
        codec: Codec,
        audio_format: str,
        agent: AgentConfig,
        log: Any,
        transcript: TranscriptLog | None = None,
        probe: CallProbe | None = None,
        actions: Actions | None = None,
        recording: Recording | None = None,
        *,
        playback_buffer_s: float = MAX_BUFFER_S,
        limits: CallLimits | None = None,
        screen: AnswerScreen | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        """``limits``: the call's longest duration, hold timeout and RTP timeout (none: no
        limit); ``screen``: answering-machine detection (none: off); ``timeline``: the
        call's marks, fed here (none: not kept)."""
        self.timeline = timeline
        self.session = session
        self.rtp = rtp
        self.log = log
        self.transcript = transcript or TranscriptLog(None, log)
        self.playback = Playback(
            rtp.frame_samples,
            on_finished=self.transcript.agent_played,
            max_buffer_s=playback_buffer_s,
            rate=codec.rate,
        )
        # G.711 passes through when the profile asks; other codecs always talk PCM16.
        passthrough = audio_format == "g711" and is_g711(codec)
        self.audio = ModelAudio(self.playback, codec, passthrough)
        self.uplink = CallerAudio(
            codec,
            passthrough,
            agent,
            rtp.ptime_ms,
            recording,
            self._caller_speaking,
            self._callee_audio if screen is not None else None,
        )
        if timeline is not None and not is_g711(codec):  # judged on the decoded audio
            self.uplink.heard = partial(timeline.caller_pcm, rate=codec.rate)
        self._echo = self.uplink.echo  # shown each frame played (None: no echo suppression)
        self.probe = probe or CallProbe()  # metrics hooks (gateway/metrics.py)
        self.core = CallCore(
            self.playback,
            self.audio,
            transcript=self.transcript,
            conversation=getattr(session, "conversation", None),
            dtmf=agent.dtmf,
            log=log,
            probe=self.probe,
            greeting=agent.greeting,
            interrupts=agent.barge_in,
            confirm_s=self.uplink.confirm_s,
            limits=limits,
            silence_timeout_s=agent.silence_timeout_s,
            screen=screen,
        )
        self.actions = actions or Actions(None, None, log)
        self.actions.attach(self.core, self._run)
        self.recording = recording
        self.tap: CallTap | None = None  # the console listens or shows meters (tap())
        self._listen(rtp, log)
        loop = asyncio.get_running_loop()
        self._uplink_failed: asyncio.Future[None] = loop.create_future()
        self._ended: asyncio.Future[str] = loop.create_future()  # a HangUp's reason
        self._outbox: deque[rt.ClientCommand] = deque()  # for the model, in the core's order
        self._outbox_ready = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None  # the core's next tick
        self._timer_at: float | None = None

    def _listen(self, rtp: RtpStream, log: Any) -> None:
        """What the RTP stream reports besides audio: keys, hold, a flood, the peer's address."""
        rtp.on_dtmf = self._on_key
        rtp.on_flood = lambda: log.warning("rtp.flood", limit_pps=rtp.flood_limit_pps)
        rtp.on_hold = self._on_hold
        rtp.on_lost = self.uplink.lost  # before the packet that follows the gap, in order
        rtp.on_peer_learned = lambda addr: log.info(
            "rtp.source_learned", rtp_remote=f"{addr[0]}:{addr[1]}"
        )

    def console_tap(self) -> CallTap:
        """The call's console tap, put on the media path when first asked for."""
        if self.tap is None:
            self.tap = self.uplink.tap = CallTap(self.rtp.frame_samples, self.uplink.codec.rate)
        return self.tap

    def console_untap(self) -> None:
        """Off the media path again once nobody listens or watches its meters."""
        if self.tap is not None and not self.tap.active:
            self.tap = self.uplink.tap = None

    @property
    def stats(self) -> CallStats:
        return self.core.stats

    # --- running the core's commands ----------------------------------------------------------

    def _run(self, commands: Sequence[Command]) -> None:
        """Carry out the core's commands, in its order; then its next tick is scheduled."""
        if commands and self.timeline is not None:
            self.timeline.commands(commands, time.monotonic())
        for command in commands:
            if isinstance(command, HangUp):
                if not self._ended.done():
                    self._ended.set_result(command.reason)
            elif isinstance(command, RunTool):
                self.actions.run_tool(command.call)
            elif isinstance(command, Transfer):
                self.actions.transfer(command)
            elif isinstance(command, Decided | LeaveMessage):
                if self.core.screen is not None:  # the call's log, events, record
                    self.core.screen.report(command)
            else:
                self._outbox.append(command)
                self._outbox_ready.set()
        self._schedule()

    def _schedule(self) -> None:
        """One timer for the core's deadline. A timer set sooner stays: its tick is harmless
        and asks again (the RTP timeout's deadline moves on with every packet: no timer is
        re-armed per packet)."""
        now = time.monotonic()
        deadline = self.core.deadline(now)
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = asyncio.get_running_loop().call_later(max(deadline - now, 0.0), self._tick)

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        self._run(self.core.tick(time.monotonic()))

    async def _writer(self) -> None:
        """The model's commands to the link, one at a time, in the order the core gave them."""
        while True:
            await self._outbox_ready.wait()
            while self._outbox:
                await self.session.send(self._outbox.popleft())
            self._outbox_ready.clear()

    # --- inputs -------------------------------------------------------------------------------

    def on_payload(self, payload: bytes) -> None:
        """From the RTP socket: the caller's audio, on its way to the model at once."""
        try:
            now = time.monotonic()
            self.probe.uplink_taken(now)
            if self.timeline is not None:
                self.timeline.caller_frame(payload, now)
            # talking: the agent is being heard (a held answer too: it is still due)
            audio = self.uplink.convert(
                payload, self.playback.buffered_ms > 0, self.core.stats.local_unconfirmed
            )
            if not audio:
                return
            if self.session.send_audio(audio, UPLINK_BACKLOG_FRAMES):
                self.probe.uplink_sent()
            else:
                self.core.stats.uplink_dropped += 1
        except Exception as exc:  # this call's failure alone: it ends the call, not the socket
            if not self._uplink_failed.done():
                self._uplink_failed.set_exception(exc)

    def next_frame(self) -> np.ndarray | None:
        """The pacer's frame source: playback, seen on its way out (echo, recording)."""
        frame = self.core.next_frame()
        if self.timeline is not None:
            self.timeline.agent_frame(frame is not None)
        if self._echo is not None:
            self._echo.far_end(frame)
        if self.recording is not None:
            self.recording.tick(frame)
        if self.tap is not None:
            self.tap.agent(frame)
        if frame is None and self.core.due:  # the agent's last words are out: end, transfer
            self._run(self.core.take_due())
        return frame

    def _on_key(self, digit: str, duration_ms: int) -> None:
        now = time.monotonic()
        if self.timeline is not None:
            self.timeline.key_in(digit, now)
        self._run(self.core.key(digit, now, duration_ms=duration_ms))

    def key(self, digit: str, source: str) -> None:
        """A key press signalled outside RTP (SIP INFO)."""
        now = time.monotonic()
        if self.timeline is not None:
            self.timeline.key_in(digit, now)
        self._run(self.core.key(digit, now, source=source))

    def say(self, text: str, mode: str) -> None:
        """The control API's text: spoken now, or told to the model (CallCore.say)."""
        self._run(self.core.say(text, mode, time.monotonic()))

    async def _until_hang_up(self) -> None:
        """The core ends the call: after the agent's last words (end_call), a transfer taken,
        the call's time up."""
        raise CallEnded(await self._ended)

    async def run(self) -> str:
        """Bridge until one side ends; returns the end reason."""
        tasks = [
            asyncio.create_task(self._uplink(), name="uplink"),
            asyncio.create_task(self._downlink_loop(), name="downlink"),
            asyncio.create_task(self._writer(), name="writer"),
            asyncio.create_task(
                self.rtp.pace(self, self.probe.metrics.pacer_lateness.observe), name="pacer"
            ),
            asyncio.create_task(self._until_hang_up(), name="hang_up"),
        ]
        try:
            now = time.monotonic()
            if self.timeline is not None:
                self.timeline.origin = now  # its times count from here, as the core's do
            self._run(self.core.start(now))
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
        finally:
            for task in tasks:
                task.cancel()
            if self._timer is not None:
                self._timer.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.actions.close()
            self.core.end()  # what was playing ends here, for the transcript
            if self.timeline is not None:
                self.timeline.end(time.monotonic())

    # --- caller -> model ----------------------------------------------------------------------

    async def _uplink(self) -> None:
        """Ends the call when the uplink (``on_payload``) fails."""
        await self._uplink_failed

    def _callee_audio(self, pcm: np.ndarray) -> bool:
        """The callee's audio to the answering-machine detection; whether the model hears it
        (not before the decision, nor on a machine in voicemail mode). The frame that brings
        the decision does not pass: the model is told first (the writer sends it)."""
        screen = self.core.screen
        passing = screen is None or screen.passing
        commands = self.core.callee_audio(pcm, time.monotonic())
        if commands:
            self._run(commands)
        return passing

    def _on_hold(self, held: bool) -> None:
        """From the stream: the caller put the call on hold, or resumed it."""
        self.core.hold(held, time.monotonic())
        self._schedule()

    def _caller_speaking(self) -> None:
        """The local VAD heard the caller start: the core may hold playback."""
        now, held = time.monotonic(), self.playback.held
        self.core.caller_speaking(now)
        if self.timeline is not None and self.playback.held and not held:
            self.timeline.local_hold(now)
        self._schedule()

    # --- model -> caller ----------------------------------------------------------------------

    async def _downlink_loop(self) -> None:
        async for event in self.session.events():
            if type(event) is rt.AudioDelta:
                self.rtp.poll_pacer()  # a due packet goes out before this delta's resampling
                self.core.audio_delta(event)
                continue
            now = time.monotonic()
            if self.timeline is not None:
                self.timeline.server_event(event, now)
            commands = self.core.server_event(event, now)
            if commands:
                self._run(commands)
            elif type(event) is rt.ResponseDone:  # the silence guard counts from here
                self._schedule()  # (any other event without a command brings no deadline)
        code = self.session.close_code
        raise CallEnded(f"realtime_closed:{code}")
