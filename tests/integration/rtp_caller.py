"""A phone's media side in Python, on a real loopback UDP socket.

SIPp sets up the call (its SDP names this socket's port); this object is the handset: it
speaks a script into the call, records every packet it hears with its arrival time, and, as
a speakerphone does, can send what it hears back into the call (an echo at ``echo_gain_db``,
``echo_delay_ms`` later).

Its RTP is symmetric (RFC 4961): it learns the gateway's RTP address from the first packet
the gateway sends (the gateway's pacer starts at once, with silence), and sends there.
Its own sending runs on an absolute 20 ms clock, like a phone's.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gateway.media.g711 import G711, PCMU

FRAME = 160  # 20 ms at 8 kHz


@dataclass(slots=True)
class Heard:
    at: float  # time.monotonic() of arrival
    seq: int
    marker: bool
    payload: bytes
    payload_type: int = 0
    timestamp: int = 0

    def is_silence(self, silence_byte: int) -> bool:
        return self.payload.count(silence_byte) == len(self.payload)


class RtpCaller(asyncio.DatagramProtocol):
    def __init__(
        self,
        codec: G711 = PCMU,
        payload_type: int = 0,
        *,
        echo_gain_db: float | None = None,
        echo_delay_ms: int = 100,
    ) -> None:
        self.codec = codec
        self.payload_type = payload_type
        self.echo_gain = None if echo_gain_db is None else 10 ** (echo_gain_db / 20)
        self.echo_delay_s = echo_delay_ms / 1000
        self.heard: list[Heard] = []
        self._spurts: list[list[Heard]] = []
        self._sound = 0
        self.speech_sent_at: list[float] = []  # when each say() really started going out
        self._remote: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._script: deque[np.ndarray | None] = deque()  # None: an utterance starts
        self._echo: deque[tuple[float, np.ndarray]] = deque()
        self._changed = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._seq = 0
        self._ts = 0
        self._event_ts = 0
        # (event, duration, end, first packet of the event) per tick
        self._keys: deque[tuple[int, int, bool, bool]] = deque()
        self.port = 0

    async def open(self, host: str = "127.0.0.1") -> RtpCaller:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        assert self._transport is not None
        self.port = self._transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> RtpCaller:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # --- receiving ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        now = time.monotonic()
        marker = bool(data[1] & 0x80)
        seq, timestamp = struct.unpack_from("!HI", data, 2)
        payload = data[12:]
        heard = Heard(now, seq, marker, payload, data[1] & 0x7F, timestamp)
        self.heard.append(heard)
        if not heard.is_silence(self.codec.silence):  # kept as it comes: cheap to wait on
            if marker or not self._spurts:
                self._spurts.append([])
            self._spurts[-1].append(heard)
            self._sound += 1
        if self._remote is None:
            self._remote = addr
            self._sender = asyncio.get_running_loop().create_task(self._send_loop())
        if self.echo_gain is not None:
            self._echo.append((now, self.codec.decode(payload).astype(np.float64)))
        self._changed.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for `condition` (checked on every packet heard), at most `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"rtp caller: {what} not within {timeout} s") from None

    # --- what was heard -------------------------------------------------------------------

    @property
    def sound_packets(self) -> int:
        """Packets that carried sound (the gateway sends exact digital silence otherwise)."""
        return self._sound

    def spurts(self) -> list[list[Heard]]:
        """Talk spurts heard: runs of sound packets; each starts with the RTP marker bit."""
        return self._spurts

    def audio(self) -> np.ndarray:
        return np.concatenate([self.codec.decode(h.payload) for h in self.heard])

    # --- speaking -------------------------------------------------------------------------

    def say(self, pcm: np.ndarray) -> None:
        """Speak `pcm` (8 kHz int16) after whatever is still being said."""
        pcm = np.asarray(pcm, dtype=np.int16)
        pad = (-len(pcm)) % FRAME
        frames = np.concatenate([pcm, np.zeros(pad, np.int16)]).reshape(-1, FRAME)
        self._script.append(None)
        self._script.extend(frames)

    @property
    def speaking(self) -> bool:
        """Part of what was said is still to be sent."""
        return bool(self._script)

    def press(self, keys: str, ms: int = 100) -> None:
        """Press keys as a phone does (RFC 4733): PT 101 packets in place of audio, an update
        every 20 ms, then the end packet three times; 100 ms of silence between keys."""
        for key in keys:
            event = "0123456789*#".index(key)
            self._keys.extend((event, d, False, d == FRAME) for d in range(FRAME, ms * 8, FRAME))
            self._keys.extend([(event, ms * 8, True, False)] * 3)
            self._keys.extend([(-1, 0, False, False)] * 5)  # a gap of audio between keys

    def tap(self, keys: str) -> None:
        """Keys as fast as RTP carries them (a hostile or broken phone): each key one end
        packet of its own event (new timestamp), one key per 20 ms tick, no gap."""
        self._keys.extend(("0123456789*#".index(key), FRAME, True, True) for key in keys)

    @property
    def keys_pending(self) -> int:
        """Key packets not sent yet."""
        return len(self._keys)

    def _key_packet(self) -> bytes | None:
        """The next RFC 4733 packet due, or None when this tick carries audio."""
        event, duration, end, first = self._keys.popleft()
        if event < 0:
            return None
        if first:
            self._event_ts = self._ts
        payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
        header = struct.pack(
            "!BBHII", 0x80, (0x80 if first else 0) | 101, self._seq & 0xFFFF,
            self._event_ts & 0xFFFFFFFF, 0x5EED,
        )  # fmt: skip
        return header + payload

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while self._transport is not None:
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.02 - loop.time()))
            now = time.monotonic()
            frame = np.zeros(FRAME, np.float64)
            while self._script and self._script[0] is None:
                self._script.popleft()
                self.speech_sent_at.append(now)
            if self._script:
                frame += self._script.popleft()  # type: ignore[operator]
            if self.echo_gain is not None:
                while self._echo and self._echo[0][0] <= now - self.echo_delay_s:
                    _, heard = self._echo.popleft()
                    if len(heard) == FRAME:
                        frame += heard * self.echo_gain
                        break
            key = self._key_packet() if self._keys else None
            if key is not None and self._remote is not None and self._transport is not None:
                self._transport.sendto(key, self._remote)
                self._seq += 1
                self._ts += FRAME
                continue
            pcm = np.clip(np.rint(frame), -32768, 32767).astype(np.int16)
            seq, ts = self._seq & 0xFFFF, self._ts & 0xFFFFFFFF
            header = struct.pack("!BBHII", 0x80, self.payload_type, seq, ts, 0x5EED)
            self._seq += 1
            self._ts += FRAME
            if self._remote is not None and self._transport is not None:
                self._transport.sendto(header + bytes(self.codec.encode(pcm)), self._remote)


def voice(seconds: float, f0: float, dbfs: float = -20.0, rate: int = 8000) -> np.ndarray:
    """A continuous voice-like sound: harmonics of `f0`, a 4 Hz syllable rhythm that never
    falls silent, at about `dbfs` RMS (an energy VAD hears it from start to end)."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8) if f0 * k < rate / 2.2)
    x = tone * (0.7 + 0.3 * np.sin(2 * np.pi * 4 * t))
    x *= 10 ** (dbfs / 20) * 32767 / np.sqrt(np.mean(x**2))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)
