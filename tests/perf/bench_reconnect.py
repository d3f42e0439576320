"""How long a call is without a Realtime session after a drop, and how long a rollover takes.

The embedded agent on loopback plays the service. Reconnect: the service closes the session
with 1011 mid-call; measured from the drop to the link's `realtime.reconnected` (a new session
configured and the conversation replayed). Rollover: sessions end after `--session-s`; measured
is the switch itself (replay sent, audio redirected) and that no caller frame was lost.
Loopback has no network latency: add the service's handshake time (`realtime.session_open`
`handshake_ms` in the logs) for a real deployment. Prints a JSON report.

    .venv/bin/python tests/perf/bench_reconnect.py [--drops N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.agent import EmbeddedRealtimeServer
from gateway.config import parse_config
from gateway.realtime import protocol as rt
from gateway.realtime.auth import NoAuth
from gateway.realtime.link import RealtimeLink


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[float, str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    def _log(self, event: str, **fields: Any) -> None:
        self.lines.append((time.monotonic(), event, fields))
        self.changed.set()

    debug = info = warning = error = _log

    async def wait(self, event: str, count: int) -> float:
        async with asyncio.timeout(10):
            while True:
                found = [t for t, name, _ in self.lines if name == event]
                if len(found) >= count:
                    return found[count - 1]
                self.changed.clear()
                await self.changed.wait()


async def link_for(server: EmbeddedRealtimeServer, cfg: Any, log: Log) -> RealtimeLink:
    return await RealtimeLink.connect(
        cfg.realtime,
        cfg.agent,
        base_url=server.url,
        dialect=rt.GaDialect(),
        auth=NoAuth(),
        codec="PCMU",
        log=log,
    )


async def drain(link: RealtimeLink) -> None:
    async for _ in link.events():
        pass


async def reconnects(drops: int) -> dict[str, float]:
    cfg = parse_config({"agent": {"input_transcription": {}}})
    async with EmbeddedRealtimeServer(keep_events=0) as server:
        log = Log()
        link = await link_for(server, cfg, log)
        reader = asyncio.create_task(drain(link))
        times = []
        for i in range(drops):
            dropped = time.monotonic()
            await server.sessions[-1].drop(1011)
            times.append((await log.wait("realtime.reconnected", i + 1) - dropped) * 1000)
        reader.cancel()
        await link.close()
    return summary(times)


async def rollovers(count: int, session_s: float) -> dict[str, Any]:
    cfg = parse_config({"realtime": {"rollover_margin_s": session_s - 1}})
    async with EmbeddedRealtimeServer(max_session_s=session_s) as server:
        log = Log()
        link = await link_for(server, cfg, log)
        reader = asyncio.create_task(drain(link))
        frame = b"\x00" * 960
        sent = 0
        while len([n for _, n, _ in log.lines if n == "realtime.rolled_over"]) < count:
            sent += link.send_audio(frame, 50)
            await asyncio.sleep(0.02)  # the caller's 20 ms clock
        reader.cancel()
        await link.close()
        received = sum(
            e["type"] == "input_audio_buffer.append" for s in server.sessions for e in s.received
        )
    return {"rollovers": count, "frames_sent": sent, "frames_received": received}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1),
        "max_ms": round(ordered[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=30)
    parser.add_argument("--rollovers", type=int, default=3)
    parser.add_argument("--session-s", type=float, default=3.0)
    args = parser.parse_args()
    # The embedded agent logs each session; only the report goes to stdout.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    report = {
        "python": platform.python_version(),
        "reconnect_after_1011": asyncio.run(reconnects(args.drops)),
        "rollover": asyncio.run(rollovers(args.rollovers, args.session_s)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
