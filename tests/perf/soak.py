"""Soak: thousands of short, overlapping calls through one gateway; nothing may accumulate.

    .venv/bin/python tests/perf/soak.py [--calls 2000] [--rate 20] [--call-s 2]
                                        [--rss-bound-mib 10]

SIPp places ``--calls`` calls at ``--rate`` per second, each ``--call-s`` long, streaming
G.711 from its own RTP port (``rtp_stream``) while ``stream_service.py`` talks back without
pause, so every call runs both media directions, the playback buffer and the uplink. About
rate x call-s calls overlap at any time.

The gateway is read from the outside twice, after ``--warmup`` calls and once every call has
ended: /proc/PID (open file descriptors, threads, RSS) and /debug/state on its metrics port
(asyncio tasks, calls, RTP ports in use, playback buffers alive, gc objects). Between the two,
descriptors, tasks, ports and buffers must come back exactly to where they were (a small
slack for the metrics HTTP connection itself), and RSS may grow by at most ``--rss-bound-mib``
(allocator high-water marks, not a leak: a leak of a few KiB per call is 10+ MiB at 2,000
calls). Prints a JSON report with ``"ok": true`` when every check holds; exit code 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.gateway_proc import GatewayProcess
from tests.integration.peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from tests.integration.scenarios import caller_ulaw, streaming_call
from tests.perf.bench_load import json_line, rss_mib

HERE = Path(__file__).resolve().parent
SLACK = 2  # descriptors/tasks of the HTTP request that reads /debug/state


def snapshot(gateway: GatewayProcess, collect: bool = False) -> dict[str, Any]:
    query = "?gc=1" if collect else ""
    url = f"{gateway.metrics_url}/debug/state{query}"
    with urllib.request.urlopen(url, timeout=10) as response:
        state = json.loads(response.read())
    pid = gateway.pid
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line for line in status.splitlines() if line.startswith("Threads:"))[8:])
    return {
        **state,
        "proc_fds": len(os.listdir(f"/proc/{pid}/fd")),
        "proc_threads": threads,
        "proc_rss_mib": round(rss_mib(pid), 1),
        "at": round(time.monotonic(), 1),
    }


async def calls_done(gateway: GatewayProcess, n: int, timeout: float) -> None:
    await gateway.wait_for(
        "call.ended", timeout=timeout, where=lambda e: len(gateway.find("call.ended")) >= n
    )


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    service = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "stream_service.py"), "--response-s", "3",
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert service.stdout is not None
    url = (await json_line(service.stdout, 20))["url"]
    overlap = int(args.rate * args.call_s) + 20
    rtp = free_port_block(4 * overlap)
    config = {
        "sip": {"max_calls": 4 * overlap},
        "media": {"rtp_port_min": rtp, "rtp_port_max": rtp + 4 * overlap - 1},
        "realtime": {"url": url, "auth": {"method": "none"}},
        "logging": {"level": "info"},
        "metrics": {"debug_state": True},  # the soak reads /debug/state
    }
    gateway = GatewayProcess(workdir, config)
    await gateway.start()
    audio = caller_ulaw(workdir / "caller.ulaw", seconds=4)
    started = time.monotonic()
    try:
        sipp = Sipp(
            workdir,
            [
                "-sf", streaming_call(workdir / "call.xml", audio, int(args.call_s * 1000)),
                "-m", args.calls, "-r", args.rate, "-l", overlap, "-i", LOOPBACK,
                "-p", free_udp_port(), "-mp", free_port_block(4), "-s", "agent",
                "-timeout", int(args.calls / args.rate + 120), "-timeout_error",
                f"{LOOPBACK}:{gateway.port}",
            ],
            trace=False,
        )  # fmt: skip
        await sipp.start()
        await calls_done(gateway, args.warmup, timeout=args.warmup / args.rate + 60)
        before = await asyncio.to_thread(snapshot, gateway, True)
        samples = [before]
        while sipp.proc is not None and sipp.proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(sipp.proc.wait()), 10)
            samples.append(await asyncio.to_thread(snapshot, gateway))
        code = await sipp.wait(timeout=10)
        await calls_done(gateway, args.calls, timeout=60)  # the last call.ended: none left
        after = await asyncio.to_thread(snapshot, gateway, True)
    finally:
        await gateway.stop()
        service.terminate()
        await service.wait()
    ended = gateway.find("call.ended")
    reasons: dict[str, int] = {}
    for e in ended:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    checks = {
        "every_call_answered_and_ended_by_the_caller": code == 0
        and reasons == {"caller_bye": args.calls},
        "fds_back": after["proc_fds"] <= before["proc_fds"] + SLACK,
        "tasks_back": after["tasks"] <= before["tasks"] + SLACK,
        "threads_back": after["proc_threads"] <= before["proc_threads"],
        "rtp_ports_released": after["rtp_ports_in_use"] == 0,
        "playback_buffers_freed": after["playback_buffers"] == 0,
        "rss_growth_within_bound": after["proc_rss_mib"] - before["proc_rss_mib"]
        <= args.rss_bound_mib,
    }
    return {
        "benchmark": "soak",
        "calls": args.calls,
        "rate_per_s": args.rate,
        "call_s": args.call_s,
        "overlapping_calls_max": max(s["calls"] for s in samples),
        "sipp_exit_code": code,
        "end_reasons": reasons,
        "rejected": len(gateway.find("call.rejected")),
        "wall_s": round(time.monotonic() - started, 1),
        "after_warmup": before,
        "after_all_calls": after,
        "during": [
            {k: s[k] for k in ("calls", "tasks", "proc_fds", "proc_rss_mib")} for s in samples
        ],
        "rss_bound_mib": args.rss_bound_mib,
        "checks": checks,
        "ok": all(checks.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20, help="new calls per second")
    parser.add_argument("--call-s", type=float, default=2.0, help="length of each call")
    parser.add_argument("--warmup", type=int, default=200, help="calls before the baseline")
    parser.add_argument("--rss-bound-mib", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        report = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
