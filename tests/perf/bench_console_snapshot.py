"""The console's snapshot of N calls, timed in CPU seconds of this thread (not wall time: a
busy machine slows it, but does not add other processes' work to it).

    .venv/bin/python tests/perf/bench_console_snapshot.py [--calls 200] [--pages 3]

Each call is shaped as the registry holds it (only what ``call_controls.live`` reads), the
snapshot serialised as the hub sends it, and put on P pages' queues. Prints the CPU of one
snapshot and its share of a core at the list's rate (hub.SNAPSHOT_HZ / hub.LIST_EVERY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.call_controls import live
from gateway.console.hub import LIST_EVERY, SNAPSHOT_HZ, Hub


def fake_call(i: int) -> Any:
    """An answered call as ``live`` sees it."""
    receiver = SimpleNamespace(
        reorder=SimpleNamespace(stats=SimpleNamespace(lost=i % 3)),
        stats=SimpleNamespace(packets_in=5000 + i),
    )
    bridge = SimpleNamespace(
        rtp=SimpleNamespace(receiver=receiver),
        session=SimpleNamespace(turns=SimpleNamespace(talking=i % 2 == 0)),
        playback=SimpleNamespace(buffered_ms=120 if i % 3 else 0),
        probe=SimpleNamespace(uplink_ms=1.234, downlink_ms=8.5),
        stats=SimpleNamespace(barge_ins=i % 4),
        tap=None,
    )
    record = SimpleNamespace(dialed="agent", profile="default")
    setup = SimpleNamespace(record=record, answered_at=time.monotonic() - i, bridge=bridge)
    sip = SimpleNamespace(caller=f"sip:+49301234{i:04d}@pbx.example")
    return SimpleNamespace(id=f"{i:012x}", setup=setup, end_reason=None, sip=sip)


async def measure(calls: int, pages: int, rounds: int) -> dict[str, Any]:
    registry = [fake_call(i) for i in range(calls)]
    hub = Hub()
    hub.stats_source = lambda call_id: [live(c) for c in registry]
    subs = [hub.subscribe(None) for _ in range(pages)]
    assert all(subs)
    cpu0 = time.thread_time()
    for _ in range(rounds):
        hub._snapshot(True)
        for sub in subs:
            assert sub is not None
            sub.queue.clear()
    per_snapshot = (time.thread_time() - cpu0) / rounds
    hub.close()
    size = len(json.dumps({"calls": hub.stats_source(None)}))
    rate = SNAPSHOT_HZ / LIST_EVERY
    return {
        "calls": calls,
        "pages": pages,
        "cpu_ms_per_snapshot": round(per_snapshot * 1000, 3),
        "snapshot_kib": round(size / 1024, 1),
        "list_rate_hz": rate,
        "share_of_a_core": round(per_snapshot * rate, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.calls, args.pages, args.rounds)), indent=2))


if __name__ == "__main__":
    main()
