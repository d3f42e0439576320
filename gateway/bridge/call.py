"""One call's bridge between the RTP leg and its Realtime session.

Three tasks live as long as the call: uplink (caller audio to the model),
downlink (model events to playback), and the pacer (playback to RTP). The
first to end ends the call; the others are cancelled with it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed

from ..media.g711 import G711
from ..media.resample import Resampler
from ..media.stream import RtpStream
from ..metrics import CallProbe
from ..realtime import protocol as rt
from ..realtime.link import RealtimeLink
from .playback import ItemKey, Playback

UPLINK_QUEUE_FRAMES = 50  # 1 s of caller audio may wait for a slow socket, then the oldest goes


class CallEnded(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class TranscriptLine:
    at: float  # seconds since the call was answered
    role: str
    text: str


@dataclass
class CallStats:
    uplink_dropped: int = 0
    deltas_dropped: int = 0
    barge_ins: int = 0
    responses: int = 0
    service_errors: int = 0
    usage: dict[str, int] = field(default_factory=dict)


class CallBridge:
    def __init__(
        self,
        session: RealtimeLink,
        rtp: RtpStream,
        codec: G711,
        audio_format: str,
        greeting: str | None,
        log: Any,
        probe: CallProbe | None = None,
    ) -> None:
        self.session = session
        self.rtp = rtp
        self.codec = codec
        self.passthrough = audio_format == "g711"
        self.greeting = greeting
        self.log = log
        self.playback = Playback(rtp.frame_samples)
        self._up = Resampler(8000, rt.PCM16_RATE)
        self._down = Resampler(rt.PCM16_RATE, 8000)
        self.probe = probe or CallProbe()  # metrics hooks (gateway/metrics.py)
        # (arrival time, payload): the uplink latency is measured from the packet's arrival.
        self._uplink: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(UPLINK_QUEUE_FRAMES)
        self._active_response: str | None = None
        self._cancelled: set[str] = set()
        self._truncated: set[ItemKey] = set()
        self._started = time.monotonic()
        self.transcript: list[TranscriptLine] = []
        self.stats = CallStats()

    def on_payload(self, payload: bytes) -> None:
        """From the RTP socket: queue the caller's audio for the uplink task."""
        if self._uplink.full():
            self._uplink.get_nowait()
            self.stats.uplink_dropped += 1
        self._uplink.put_nowait((time.monotonic(), payload))

    async def run(self) -> str:
        """Bridge until one side ends; returns the end reason."""
        tasks = [
            asyncio.create_task(self._uplink_loop(), name="uplink"),
            asyncio.create_task(self._downlink_loop(), name="downlink"),
            asyncio.create_task(self.rtp.pace(self.probe.paced(self.playback)), name="pacer"),
        ]
        try:
            if self.greeting:
                await self.session.send(self.session.dialect.response_create(self.greeting))
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
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- caller -> model ----------------------------------------------------------------------

    async def _uplink_loop(self) -> None:
        dialect = self.session.dialect
        while True:
            arrived, payload = await self._uplink.get()
            self.probe.uplink_taken(arrived)
            if self.passthrough:
                audio = payload
            else:
                pcm = self._up.process(self.codec.decode(payload))
                audio = pcm.tobytes()
            if audio:
                await self.session.send(dialect.append_audio(audio))
                self.probe.uplink_sent()

    # --- model -> caller ----------------------------------------------------------------------

    async def _downlink_loop(self) -> None:
        async for event in self.session.events():
            await self._on_event(event)
        code = self.session.close_code
        raise CallEnded(f"realtime_closed:{code}")

    async def _on_event(self, event: rt.ServerEvent) -> None:
        match event:
            case rt.AudioDelta():
                self._on_audio(event)
            case rt.AudioDone():
                key = ItemKey(event.response_id, event.item_id)
                if event.response_id not in self._cancelled and not self.passthrough:
                    tail = self._down.flush()
                    self.playback.push(key, tail, 0.0)
                self.playback.mark_done(key)
            case rt.SpeechStarted():
                await self._barge_in(event)
            case rt.ResponseStarted():
                self._active_response = event.response_id
                self.stats.responses += 1
            case rt.ResponseDone():
                if self._active_response == event.response_id:
                    self._active_response = None
                self.probe.response_done(event.usage)
                for name, value in event.usage.items():
                    if isinstance(value, int):
                        self.stats.usage[name] = self.stats.usage.get(name, 0) + value
                self.log.info(
                    "realtime.response_done", status=event.status, reason=event.reason
                )
            case rt.Transcript():
                self.transcript.append(
                    TranscriptLine(time.monotonic() - self._started, event.role, event.text)
                )
                self.log.info("call.transcript", role=event.role, text=event.text)
            case rt.ServiceError():
                self.stats.service_errors += 1
                self.probe.realtime_error(event.code or "no_code")
                level = self.log.debug if event.benign else self.log.warning
                level("realtime.error", code=event.code, message=event.message)
            case _:
                pass

    def _on_audio(self, event: rt.AudioDelta) -> None:
        if event.response_id in self._cancelled:
            self.stats.deltas_dropped += 1
            return
        key = ItemKey(event.response_id, event.item_id, event.content_index)
        self.probe.audio_arrived(playback_idle=self.playback.buffered_ms == 0)
        if self.passthrough:
            pcm = self.codec.decode(event.audio)
            received_ms = len(event.audio) / 8
        else:
            pcm = self._down.process(np.frombuffer(event.audio, dtype="<i2"))
            received_ms = len(event.audio) / 48
        self.playback.push(key, pcm, received_ms)

    async def _barge_in(self, event: rt.SpeechStarted) -> None:
        """The caller talks over the model: stop playback now, tell the model what was heard."""
        since = time.monotonic()
        cut = self.playback.flush()
        self.probe.flushed(since, cut_audio=bool(cut))
        self._down.reset()
        dialect = self.session.dialect
        events: list[str] = []
        if self._active_response is not None:
            self._cancelled.add(self._active_response)
            events.append(dialect.response_cancel())
            self._active_response = None
        # Items with audio still queued, or still streaming, were not heard in full.
        streaming = [k for k, item in self.playback.items.items() if not item.done]
        for key in dict.fromkeys(cut + streaming):
            if key in self._truncated:
                continue
            item = self.playback.items[key]
            self._truncated.add(key)
            self._cancelled.add(key.response_id)
            end_ms = int(min(item.sent_ms, item.received_ms))
            events.append(dialect.truncate(key.item_id, end_ms, key.content_index))
            self.log.info("call.barge_in", item_id=key.item_id, heard_ms=end_ms)
        if events:
            self.stats.barge_ins += 1
        for text in events:
            await self.session.send(text)
