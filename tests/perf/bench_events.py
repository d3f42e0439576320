"""Call events, measured: what emitting costs a call, and how fast the outbox drains.

An `EventDelivery` in this process with its outbox on the given disk, and a receiver (aiohttp,
verifying every signature with the Standard Webhooks library) on loopback. ``--calls`` calls
each emit started, answered and ended (the last with a record and a 20-turn transcript, about
6 KiB), all at once, as a burst of hang-ups would.

* ``emit_us``: the time `emit` takes on the event loop (what a call pays), p50/p99/max.
* ``drain_s`` and ``events_per_s``: the first emit to the last delivery confirmed and its
  file removed.

    .venv/bin/python tests/perf/bench_events.py [--calls 500] [--dir /var/tmp/outbox]

Prints a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import structlog
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.config.hooks import EventsHook
from gateway.hooks.delivery import EventDelivery
from gateway.metrics import EventMetrics
from tests.integration.event_receiver import SECRET, EventReceiver


def ended_data(n: int) -> dict[str, object]:
    turns = [
        {"type": "turn", "role": "caller" if i % 2 else "agent", "text": "words " * 40}
        for i in range(20)
    ]
    record = {"call_id": f"c{n}", "caller": "+4930123456", "end_reason": "caller_bye"}
    return {"reason": "caller_bye", "record": record, "transcript": {"turns": turns}}


async def run(calls: int, directory: Path) -> dict[str, object]:
    registry = CollectorRegistry()
    async with EventReceiver() as receiver:
        hook = EventsHook.model_validate({"url": receiver.url, "max_pending": calls * 3})
        delivery = EventDelivery(hook, directory, EventMetrics(registry), SECRET)
        await delivery.start()
        emit_us: list[float] = []
        started = time.perf_counter()
        for n in range(calls):
            for kind, data in (
                ("call.started", {"caller": "+4930123456"}),
                ("call.answered", {"codec": "PCMU"}),
                ("call.ended", ended_data(n)),
            ):
                t0 = time.perf_counter()
                delivery.emit(kind, data, call_id=f"c{n}")
                emit_us.append((time.perf_counter() - t0) * 1e6)
        async with asyncio.timeout(600):
            await delivery.wait_empty()
        drain_s = time.perf_counter() - started
        await delivery.close()
        assert len(receiver.delivered) == calls * 3
    us = np.array(emit_us)
    return {
        "calls": calls,
        "events": calls * 3,
        "outbox_dir": str(directory),
        "emit_us": {
            "p50": round(float(np.percentile(us, 50)), 1),
            "p99": round(float(np.percentile(us, 99)), 1),
            "max": round(float(us.max()), 1),
        },
        "drain_s": round(drain_s, 2),
        "events_per_s": round(calls * 3 / drain_s),
        "failed_attempts": registry.get_sample_value("sipgw_events_failed_total"),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="outbox (default: a temp dir)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        directory = args.dir or Path(tmp) / "outbox"
        print(json.dumps(asyncio.run(run(args.calls, directory)), indent=1))


if __name__ == "__main__":
    main()
