"""Added delay, measured per sample, both ways through a real gateway (issue 19).

A real gateway process; SIPp places the call; the caller's media is a Python socket here that
speaks espeak-ng speech on an absolute 20 ms clock and timestamps every packet it sends and
receives.  The Realtime service is a small server in this process: it timestamps every
``input_audio_buffer.append`` it receives and streams answers (band-limited noise with a
syllable rhythm) as audio deltas paced at real time, each delta's send time noted.  One clock
(``time.monotonic``) for all.

* Uplink: the appended 24 kHz audio is aligned with the caller's audio by cross-correlation
  (per second of audio); each appended sample then has the packet that carried it.  Its delay
  is the frame's arrival at the service minus that packet's departure: ``uplink_ms`` over
  every sample, and ``uplink_last_sample_ms`` for each packet's last sample.
* Downlink: each answer, resampled to 8 kHz, is aligned with the audio the caller heard; the
  RTP packet carrying a delta's first sample gives ``downlink_ms`` = that packet's arrival
  minus the delta's departure (``first_delta_ms``: the first delta of each answer).
* ``filters``: the resampling path 8k -> 24k -> 8k offline, with the bridge's resamplers and
  with soxr MQ (the resampler before issue 19): PESQ (P.862 narrowband) on speech, in-band
  magnitude, and the hold-back per 20 ms chunk.

    .venv/bin/python tests/perf/bench_latency.py [--seconds 20] [--delta-ms 50] [--save NAME]

Targets: uplink mean <= 3 ms; downlink p50 <= 12 ms, p99 <= 22 ms.

The phone speaks all through the call, over every answer, to measure both ways at once; with
local barge-in (``agent.local_barge_in``, the default) that speech would pause each answer
while the detector waits for the service's word on it (up to its ``tail_ms`` and more: a
deliberate hold, not delay), so the gateway runs without it here.  ``--local-barge-in``
measures with it, for that hold's own figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.agent import default_session, merge_session
from gateway.media.g711 import PCMU
from tests.audio import normalized_xcorr, speech_wav
from tests.integration.gateway_proc import GatewayProcess
from tests.integration.scenarios import sipp_dial
from tests.perf.latency_filters import filter_report

FRAME = 160
RATE = 24000
TARGETS = {"uplink_mean_ms": 3.0, "downlink_p50_ms": 12.0, "downlink_p99_ms": 22.0}
CALLER_TEXT = (
    "Hello, I would like to check the status of my order. It was placed on Monday and the "
    "tracking number starts with seven four two. Could you tell me when it will arrive?"
)


def stats(values: np.ndarray | list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": int(a.size),
        "mean": round(float(a.mean()), 2),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p90": round(float(np.percentile(a, 90)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
    }


class Caller(asyncio.DatagramProtocol):
    """The handset: speaks `script` (looped) in PCMU packets, notes every packet's time."""

    def __init__(self, script: np.ndarray) -> None:
        self.script = PCMU.encode(script)
        self.sent_at: list[float] = []  # packet k carries script samples of frame k (looped)
        self.heard: list[tuple[float, bytes]] = []
        self.first = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.monotonic()
        if len(data) < 12:
            return
        self.heard.append((now, data[12:]))
        if not self.first.done():
            self.first.set_result(addr)

    async def speak(self, seconds: float) -> None:
        addr = await asyncio.wait_for(self.first, 20)
        loop = asyncio.get_running_loop()
        start = loop.time()
        frames = len(self.script) // FRAME
        for k in range(int(seconds * 50)):
            await asyncio.sleep(max(0.0, start + k * 0.02 - loop.time()))
            i = (k % frames) * FRAME
            head = struct.pack("!BBHII", 0x80, 0x80 if k == 0 else 0, k & 0xFFFF, k * FRAME, 7)
            assert self.transport is not None
            self.transport.sendto(head + self.script[i : i + FRAME], addr)
            self.sent_at.append(time.monotonic())


class Service:
    """The Realtime side: records appends, streams answers at real time with known timing."""

    def __init__(self, answer: np.ndarray, args: argparse.Namespace) -> None:
        self.answer = answer  # 24 kHz int16
        self.args = args
        self.appends: list[tuple[float, np.ndarray]] = []
        self.responses: list[tuple[np.ndarray, list[tuple[float, int]]]] = []  # audio, deltas
        self.rng = np.random.default_rng(args.seed)

    async def session(self, ws: ServerConnection) -> None:
        config = default_session("gpt-realtime", int(time.time()) + 3600)
        await ws.send(json.dumps({"type": "session.created", "session": config}))
        talker: asyncio.Task[None] | None = None
        try:
            async for message in ws:
                now = time.monotonic()
                event = json.loads(message)
                kind = event.get("type")
                if kind == "input_audio_buffer.append":
                    pcm = np.frombuffer(base64.b64decode(event["audio"]), "<i2")
                    self.appends.append((now, pcm))
                elif kind == "session.update":
                    config = merge_session(config, event["session"], voice_locked=False)
                    await ws.send(json.dumps({"type": "session.updated", "session": config}))
                    if talker is None:
                        talker = asyncio.create_task(self.talk(ws))
        except ConnectionClosed:
            pass
        finally:
            if talker is not None:
                talker.cancel()

    async def talk(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        step = RATE * self.args.delta_ms // 1000
        length = int(self.args.answer_s * RATE) // step * step
        await asyncio.sleep(0.5)
        for n in range(10_000):
            start = int(self.rng.integers(0, len(self.answer) - length))
            audio = self.answer[start : start + length]
            rid, iid = f"resp_{n}", f"item_{n}"
            ids = {"response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0}
            response = {"id": rid, "object": "realtime.response", "status": "in_progress",
                        "output": [], "usage": None}  # fmt: skip
            await ws.send(json.dumps({"type": "response.created", "response": response}))
            deltas: list[tuple[float, int]] = []
            self.responses.append((audio, deltas))
            t0 = loop.time()
            for k, i in enumerate(range(0, length, step)):
                await asyncio.sleep(max(0.0, t0 + k * self.args.delta_ms / 1000 - loop.time()))
                chunk = base64.b64encode(audio[i : i + step].astype("<i2").tobytes()).decode()
                deltas.append((time.monotonic(), i))
                await ws.send(
                    json.dumps({"type": "response.output_audio.delta", **ids, "delta": chunk})
                )
            await ws.send(json.dumps({"type": "response.output_audio.done", **ids}))
            response["status"] = "completed"
            await ws.send(json.dumps({"type": "response.done", "response": response}))
            await asyncio.sleep(float(self.rng.uniform(0.2, 0.6)))  # deltas came in real time


def uplink(caller: Caller, script: np.ndarray, appends: list[tuple[float, np.ndarray]]) -> dict:
    """Per appended sample: its frame's arrival minus the departure of the packet it came in."""
    sent = np.asarray(caller.sent_at)
    frames = len(script) // FRAME
    heard = PCMU.decode(caller.script[: frames * FRAME]).astype(np.float64)
    ref = soxr.resample(np.tile(heard, -(-len(sent) // frames)), 8000, RATE, "HQ")
    got = np.concatenate([pcm for _, pcm in appends]).astype(np.float64)
    at = np.concatenate([np.full(len(pcm), t) for t, pcm in appends])
    delays, last, scores = [], [], []
    window = RATE  # one alignment per second of appended audio
    for w0 in range(RATE, len(got) - 2 * window, window):  # skip the first second
        seg = got[w0 : w0 + window]
        if np.sqrt(np.mean(seg**2)) < 100:
            continue  # a pause in the speech: nothing to align on
        lo = max(0, w0 - 5 * RATE)
        score, lag = normalized_xcorr(seg, ref[lo : w0 + RATE])
        scores.append(score)
        src = lo + lag + np.arange(window)  # reference (24 kHz) index of each appended sample
        packet = src // (3 * FRAME)
        ok = packet < len(sent)
        delays.append((at[w0 : w0 + window] - sent[np.minimum(packet, len(sent) - 1)])[ok])
        ends = np.flatnonzero(ok & (src % (3 * FRAME) == 3 * FRAME - 1))
        last.append(at[w0 + ends] - sent[packet[ends]])
    ms = np.concatenate(delays) * 1000
    return {
        "uplink_ms": stats(ms),
        "uplink_last_sample_ms": stats(np.concatenate(last) * 1000),
        "alignment_score_min": round(min(scores), 3),
        "appends": len(appends),
        "append_samples": stats([len(p) for _, p in appends]),
    }


def answer_audio(seconds: float, seed: int) -> np.ndarray:
    """Band-limited noise (300-3,400 Hz) with a syllable rhythm, never silent: any 20 ms of it
    aligns at exactly one lag (voiced speech would also match a pitch period away)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(f < 300) | (f > 3400)] = 0
    x = np.fft.irfft(spectrum, n)
    x *= 0.4 + 0.6 * np.abs(np.sin(2 * np.pi * 2.5 * np.arange(n) / RATE))
    x *= 0.1 * 32767 / np.sqrt(np.mean(x**2))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def downlink(caller: Caller, responses: list[tuple[np.ndarray, list[tuple[float, int]]]]) -> dict:
    """Per delta: arrival at the caller of the packet carrying its first sample, minus its send.

    Each delta's first 20 ms (at 8 kHz) is found in what the caller heard, within 0.5 s after
    the delta was sent: a gap the gateway inserts elsewhere in the answer does not move it.
    """
    at = np.asarray([t for t, _ in caller.heard])
    heard = np.concatenate([PCMU.decode(p) for _, p in caller.heard]).astype(np.float64)
    every, firsts, scores, missed, grid = [], [], [], [], []
    for audio, deltas in responses:
        if not deltas or deltas[-1][0] + 1.0 > at[-1]:
            continue  # cut off by the end of the run
        ref = soxr.resample(audio.astype(np.float64), RATE, 8000, "HQ")
        for k, (t, i) in enumerate(deltas):
            lo = max(0, int(np.searchsorted(at, t)) - 2) * FRAME
            score, lag = normalized_xcorr(ref[i // 3 : i // 3 + FRAME], heard[lo : lo + 4000])
            scores.append(score)
            packet = (lo + lag) // FRAME
            delay = (at[packet] - t) * 1000
            every.append(delay)
            following = int(np.searchsorted(at, t))
            missed.append(packet - following)
            grid.append((at[following] - t) * 1000)
            if k == 0:
                firsts.append(delay)
    return {
        "downlink_ms": stats(every),
        "first_delta_ms": stats(firsts),
        "answers": len(firsts),
        "alignment_score": stats(scores),
        # Packets that reached the caller after the delta was sent but before the one carrying
        # its first sample: 0 is the floor (the next tick took it), the rest is queueing.
        "packets_before_it": {str(n): missed.count(n) for n in sorted(set(missed))},
        # The wait for the next packet after the delta, carrying it or not: the pacer's grid,
        # uniform over 0-20 ms if the deltas' phases are (the floor of downlink_ms).
        "grid_wait_ms": stats(grid),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        workdir = Path(tmp)
        script = speech_wav(workdir / "caller.wav", CALLER_TEXT, 8000, 0.0, 0.3)
        answer = answer_audio(30.0, args.seed)
        service = Service(answer, args)
        async with serve(service.session, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            config = {
                "realtime": {"url": f"ws://127.0.0.1:{port}/openai/v1/realtime",
                             "auth": {"method": "none"}},
                "logging": {"level": "info"},
                "service": {"drain_timeout_s": 0},
                # the phone talks over every answer: see the module's docstring
                **({} if args.local_barge_in else {"agent": {"local_barge_in": None}}),
            }  # fmt: skip
            gateway = await GatewayProcess(workdir, config).start()
            loop = asyncio.get_running_loop()
            _, caller = await loop.create_datagram_endpoint(
                lambda: Caller(script), local_addr=("127.0.0.1", 0)
            )
            sipp = sipp_dial(
                workdir / "call",
                gateway.port,
                caller.transport.get_extra_info("sockname")[1],
                hang_up_after_ms=int(args.seconds * 1000) + 1500,
            )
            await sipp.start()
            try:
                await caller.speak(args.seconds)
            finally:
                await gateway.stop()
                await sipp.wait(15)
                caller.transport.close()
    return {
        "benchmark": "latency",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds": args.seconds,
        "delta_ms": args.delta_ms,
        "answer_s": args.answer_s,
        "local_barge_in": args.local_barge_in,
        **{"up": uplink(caller, script, service.appends)},
        **{"down": downlink(caller, service.responses)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="call length")
    parser.add_argument("--delta-ms", type=int, default=100, help="audio per model delta")
    parser.add_argument("--answer-s", type=float, default=0.3, help="length of each answer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--local-barge-in",
        action="store_true",
        help="the gateway with agent.local_barge_in (the default), which the phone's speech "
        "over every answer holds up",
    )
    parser.add_argument("--save", metavar="NAME", help="also write tests/perf/reports/NAME.json")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    report["filters"] = filter_report()
    up, down = report["up"]["uplink_ms"], report["down"]["downlink_ms"]
    report["targets"] = {
        **TARGETS,
        "met": up["mean"] <= TARGETS["uplink_mean_ms"]
        and down["p50"] <= TARGETS["downlink_p50_ms"]
        and down["p99"] <= TARGETS["downlink_p99_ms"],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        out = Path(__file__).resolve().parent / "reports"
        out.mkdir(exist_ok=True)
        (out / f"{args.save}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
