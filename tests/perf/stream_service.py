"""A fake Realtime service for load runs: it talks without pause, to every call at once.

Each session gets the GA handshake (``session.created``, ``session.updated`` from the embedded
agent's own session model), then responses back to back, each ``--response-s`` long, whose
100 ms audio deltas stay ``--lead-s`` ahead of real time, like the service's bursts: the
gateway's pacer never runs dry, so every outbound packet of every call carries model audio.
Caller audio is read and dropped.  Runs in its own process so that its CPU is not the
gateway's.  Prints one JSON line with its URL, then a JSON summary on SIGTERM/SIGINT.

    python tests/perf/stream_service.py [--port 0] [--response-s 10] [--lead-s 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.agent import default_session, merge_session
from gateway.media.g711 import PCMA, PCMU

RATE = 24000
DELTA_MS = 100
_ids = itertools.count(1)
stats = {"sessions": 0, "appends": 0, "deltas": 0, "responses": 0}


def voice_chunks(fmt: str, seconds: float = 6.0) -> list[str]:
    """Speech-like audio (a gliding tone with a syllable envelope) in the session's output
    format (audio/pcm at 24 kHz, or audio/pcmu, audio/pcma at 8 kHz), base64 per delta."""
    rate = RATE if fmt == "audio/pcm" else 8000
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    pcm = (6000 * voice * envelope).astype(np.int16)
    if fmt == "audio/pcm":
        data, step = pcm.astype("<i2").tobytes(), rate * DELTA_MS // 1000 * 2
    else:
        data, step = (PCMU if fmt == "audio/pcmu" else PCMA).encode(pcm), rate * DELTA_MS // 1000
    return [base64.b64encode(data[i : i + step]).decode() for i in range(0, len(data), step)]


CHUNKS = {fmt: voice_chunks(fmt) for fmt in ("audio/pcm", "audio/pcmu", "audio/pcma")}


async def stream(ws: ServerConnection, fmt: str, response_s: float, lead_s: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent_s = 0.0
    chunks = itertools.cycle(CHUNKS[fmt])
    while True:
        rid, iid = f"resp_{next(_ids)}", f"item_{next(_ids)}"
        response = {"id": rid, "object": "realtime.response", "status": "in_progress",
                    "output": [], "usage": None}  # fmt: skip
        await ws.send(json.dumps({"type": "response.created", "response": response}))
        stats["responses"] += 1
        head = (
            '{"type":"response.output_audio.delta","response_id":"' + rid + '","item_id":"'
            + iid + '","output_index":0,"content_index":0,"delta":"'
        )  # fmt: skip
        for _ in range(int(response_s * 1000 / DELTA_MS)):
            delay = start + sent_s - lead_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(head + next(chunks) + '"}')
            stats["deltas"] += 1
            sent_s += DELTA_MS / 1000
        ids = {"response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0}
        await ws.send(json.dumps({"type": "response.output_audio.done", **ids}))
        response["status"] = "completed"
        await ws.send(json.dumps({"type": "response.done", "response": response}))


async def session(ws: ServerConnection, response_s: float, lead_s: float) -> None:
    stats["sessions"] += 1
    config = default_session("gpt-realtime", int(time.time()) + 3600)
    await ws.send(json.dumps({"type": "session.created", "session": config}))
    talker: asyncio.Task[None] | None = None
    try:
        async for message in ws:
            event = json.loads(message)
            kind = event.get("type")
            if kind == "input_audio_buffer.append":
                stats["appends"] += 1
            elif kind == "session.update":
                config = merge_session(config, event["session"], voice_locked=False)
                await ws.send(json.dumps({"type": "session.updated", "session": config}))
                if talker is None:
                    fmt = config["audio"]["output"]["format"]["type"]
                    talker = asyncio.create_task(stream(ws, fmt, response_s, lead_s))
    except ConnectionClosed:
        pass
    finally:
        if talker is not None:
            talker.cancel()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--response-s", type=float, default=10.0)
    parser.add_argument("--lead-s", type=float, default=1.0)
    args = parser.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        lambda ws: session(ws, args.response_s, args.lead_s),
        "127.0.0.1",
        args.port,
        compression=None,
        max_size=16 * 1024 * 1024,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"url": f"ws://127.0.0.1:{port}/openai/v1/realtime"}), flush=True)
        await stop.wait()
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
