"""CPU cost of one 20 ms frame on the inbound and outbound media paths.

Inbound:  RTP parse -> G.711 decode -> soxr 8k->24k -> base64 + JSON append event.
Outbound: JSON delta parse (base64) -> soxr 24k->8k -> playback push/next_frame ->
          G.711 encode -> RTP build.
Exactly the gateway's code, no sockets. Prints a JSON report.

    .venv/bin/python tests/perf/bench_frame.py [--frames N]
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.bridge.playback import ItemKey, Playback
from gateway.media.g711 import PCMU
from gateway.media.resample import Resampler
from gateway.media.rtp import RtpSender, parse_rtp
from gateway.realtime.protocol import GaDialect


def speechlike(seconds: float, rate: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    signal = rng.normal(0, 6000, t.size) * envelope + 4000 * np.sin(2 * np.pi * 220 * t)
    return np.clip(signal, -32768, 32767).astype(np.int16)


def per_frame_us(fn, frames: int, repeats: int = 5) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(frames)
        runs.append((time.perf_counter() - start) / frames * 1e6)
    return {"median_us": round(statistics.median(runs), 2), "min_us": round(min(runs), 2)}


def inbound(frames: int):
    dialect = GaDialect()
    sender = RtpSender(0, 160)
    up = Resampler(8000, 24000)
    caller = speechlike(frames * 0.02, 8000)
    packets = [
        bytes(sender.build(PCMU.encode(caller[i * 160 : (i + 1) * 160]))) for i in range(frames)
    ]

    def run(n: int) -> None:
        for i in range(n):
            packet = parse_rtp(packets[i])
            pcm = up.process(PCMU.decode(packet.payload))
            dialect.append_audio(pcm.tobytes())

    return run


def outbound(frames: int):
    dialect = GaDialect()
    model = speechlike(frames * 0.02, 24000, seed=2)
    # The service sends ~100 ms deltas in bursts; one delta per 5 frames.
    deltas = [
        json.dumps(
            {
                "type": "response.output_audio.delta",
                "event_id": f"e{i}",
                "response_id": "r",
                "item_id": "i",
                "output_index": 0,
                "content_index": 0,
                "delta": base64.b64encode(model[i * 2400 : (i + 1) * 2400].tobytes()).decode(),
            }
        )
        for i in range(frames // 5)
    ]

    def run(n: int) -> None:
        down = Resampler(24000, 8000)
        playback = Playback(160)
        sender = RtpSender(0, 160)
        key = ItemKey("r", "i")
        for i in range(n):
            if i % 5 == 0:
                event = dialect.parse(deltas[i // 5])
                pcm = down.process(np.frombuffer(event.audio, dtype="<i2"))
                playback.push(key, pcm, len(event.audio) / 48)
            frame = playback.next_frame()
            payload = PCMU.encode(frame) if frame is not None else b"\xff" * 160
            sender.build(payload)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=3000, help="frames per run (60 s = 3000)")
    args = parser.parse_args()
    frames = args.frames - args.frames % 5
    inbound_run = inbound(frames)
    outbound_run = outbound(frames)
    inbound_run(50)  # warm up numpy/soxr
    outbound_run(50)
    report = {
        "benchmark": "media_frame_cpu",
        "frame_ms": 20,
        "frames_per_run": frames,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "inbound": per_frame_us(inbound_run, frames),
        "outbound": per_frame_us(outbound_run, frames),
    }
    budget = 20_000 / (report["inbound"]["median_us"] + report["outbound"]["median_us"])
    report["calls_per_core_media_only"] = int(budget)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
