"""Barge-in, measured: how fast the agent stops, and how exactly the model is told what was heard.

A real gateway process, the fake Realtime service (in this process, answering every caller
turn with a long voice-like answer), and concurrent calls placed by SIPp whose media is a
Python phone on a loopback socket. Each phone asks, waits a random 0.2-1.2 s into the
answer, then talks over it; the next answer starts the next round.

Per barge-in:

* ``cutoff_ms``: from the service sending ``speech_started`` to the last packet of the
  interrupted answer arriving at the phone (0 when no packet of it arrived after the event):
  target p99 <= 20 ms, i.e. at most the packet already on its way.
* ``truncate_error_ms``: ``|audio_end_ms - ms of that answer the phone received|``, the
  latter counted packet by packet on the wire: target <= 20 ms.
* ``onset_to_silence_ms``: from the phone starting to talk to the answer's last packet, what
  a caller feels (VAD time included); compare with ``--local-barge-in``.

    .venv/bin/python tests/perf/bench_barge_in.py [--calls 4] [--barge-ins 200] [--local-barge-in]

Prints a JSON report (also written to tests/perf/reports/ when --save is given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.agent import EmbeddedRealtimeServer, EmbeddedSession
from tests.integration.gateway_proc import GatewayProcess
from tests.integration.peers import Sipp
from tests.integration.rtp_caller import RtpCaller, voice
from tests.integration.scenarios import sipp_dial
from tests.integration.test_barge_in import BURST, long_answer

TARGET_CUTOFF_P99_MS = 20.0
TARGET_TRUNCATE_ERROR_MS = 20.0


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p90": round(float(np.percentile(a, 90)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
        "mean": round(float(a.mean()), 2),
    }


async def one_call(
    workdir: Path,
    gateway: GatewayProcess,
    fake: EmbeddedRealtimeServer,
    rounds: int,
    rng: np.random.Generator,
    started: asyncio.Event,
    sipps: list[Sipp],
) -> tuple[RtpCaller, EmbeddedSession]:
    phone = await RtpCaller().open()
    sessions_before = len(fake.sessions)
    sipp = sipp_dial(workdir, gateway.port, phone.port, timeout_ms=3_600_000)
    sipps.append(sipp)  # the gateway hangs up when it stops; SIPp then exits by itself
    await sipp.start()
    try:
        await phone.wait_until(lambda: bool(phone.heard), 20, "the gateway's first packet")
        session = fake.sessions[sessions_before]  # opened before the call was answered
        started.set()  # the next call may start: sessions stay in call order
        phone.say(voice(0.4, 120.0))
        for n in range(rounds):  # answer n is interrupted, answer n + 1 ends the round
            wait = int(rng.integers(10, 60))  # 0.2-1.2 s into the answer
            await phone.wait_until(
                lambda n=n, wait=wait: len(phone.spurts()) > n and len(phone.spurts()[n]) >= wait,
                30,
                "the answer",
            )
            phone.say(voice(0.6, 120.0))
            await phone.wait_until(lambda n=n: len(phone.spurts()) > n + 1, 30, "the next answer")
        return phone, session
    except AssertionError as exc:
        lengths = [len(s) for s in phone.spurts()]
        raise AssertionError(
            f"{exc}: talk spurts heard {lengths}, speech_started "
            f"{len(fake.sessions[sessions_before].speech_started_at)}"
        ) from None
    finally:
        phone.close()


def measure(phone: RtpCaller, session: EmbeddedSession, rounds: int) -> list[dict[str, float]]:
    spurts = phone.spurts()
    truncates = [e for e in session.received if e["type"] == "conversation.item.truncate"]
    starts = session.speech_started_at  # [0] is the question, then one per barge-in
    if len(truncates) != rounds or len(starts) < rounds + 1:
        raise RuntimeError(
            f"expected {rounds} barge-ins, got {len(truncates)} truncates and "
            f"{len(starts) - 1} speech_started"
        )
    out = []
    for k in range(rounds):
        spurt = spurts[k]
        speech_started = starts[k + 1]
        after = [h for h in spurt if h.at > speech_started]
        out.append(
            {
                "cutoff_ms": max(0.0, (spurt[-1].at - speech_started) * 1000),
                "packets_after": len(after),
                "truncate_error_ms": abs(truncates[k]["audio_end_ms"] - 20 * len(spurt)),
                "onset_to_silence_ms": (spurt[-1].at - phone.speech_sent_at[k + 1]) * 1000,
                "heard_ms": 20 * len(spurt),
            }
        )
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds = -(-args.barge_ins // args.calls)
    rng = np.random.default_rng(args.seed)
    answer = long_answer()  # 30 s, sent at 20x: still being generated when interrupted
    agent: dict[str, Any] = {"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}
    agent["local_barge_in"] = {} if args.local_barge_in else None  # None: the service's VAD
    with tempfile.TemporaryDirectory(prefix="bench-barge-in-") as tmp:
        workdir = Path(tmp)
        async with EmbeddedRealtimeServer(answer=answer, burst_speed=BURST) as fake:
            config = {
                "realtime": {"url": fake.url, "auth": {"method": "none"}},
                "agent": agent,
                "logging": {"level": "info"},
                "service": {"drain_timeout_s": 0},
            }
            gateway = await GatewayProcess(workdir, config).start()
            try:
                calls = []
                sipps: list[Sipp] = []
                for i in range(args.calls):
                    started = asyncio.Event()
                    calls.append(
                        asyncio.create_task(
                            one_call(
                                workdir / f"call{i}", gateway, fake, rounds, rng, started, sipps
                            )
                        )
                    )
                    await asyncio.wait(
                        [calls[-1], asyncio.create_task(started.wait())],
                        return_when=asyncio.FIRST_COMPLETED,
                        timeout=30,
                    )
                    if calls[-1].done():
                        calls[-1].result()  # raises what went wrong
                t0 = time.monotonic()
                results = await asyncio.gather(*calls)
                elapsed = time.monotonic() - t0
            finally:
                await gateway.stop()
                for sipp in sipps:
                    if await sipp.wait(15) != 0:
                        raise RuntimeError(f"a SIPp call failed\n{sipp.report()}")
            local = gateway.find("call.local_barge_in_confirmed")
            unconfirmed = gateway.find("call.local_barge_in_unconfirmed")
    rows = [row for phone, session in results for row in measure(phone, session, rounds)]
    cancels = sum(
        e["type"] == "response.cancel" for _, session in results for e in session.received
    )
    cutoff = stats([r["cutoff_ms"] for r in rows])
    error = stats([r["truncate_error_ms"] for r in rows])
    report: dict[str, Any] = {
        "benchmark": "barge_in",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "calls": args.calls,
        "barge_ins": len(rows),
        "local_barge_in": args.local_barge_in,
        "seconds": round(elapsed, 1),
        "response_cancel_sent": cancels,  # barge-ins that found the response still generating
        "cutoff_ms": cutoff,
        "agent_packets_after_speech_started": {
            str(n): sum(r["packets_after"] == n for r in rows)
            for n in sorted({r["packets_after"] for r in rows})
        },
        "truncate_error_ms": error,
        "onset_to_silence_ms": stats([r["onset_to_silence_ms"] for r in rows]),
        "heard_ms": stats([r["heard_ms"] for r in rows]),
        "targets": {
            "cutoff_p99_ms": TARGET_CUTOFF_P99_MS,
            "truncate_error_max_ms": TARGET_TRUNCATE_ERROR_MS,
            "met": cutoff["p99"] <= TARGET_CUTOFF_P99_MS
            and error["max"] <= TARGET_TRUNCATE_ERROR_MS,
        },
    }
    if args.local_barge_in:
        leads = [e["lead_ms"] for e in local]
        report["local_pre_emption"] = {
            "confirmed": len(leads),
            "unconfirmed": len(unconfirmed),
            "lead_ms": stats(leads) if leads else None,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4, help="concurrent calls")
    parser.add_argument("--barge-ins", type=int, default=200, help="in all, over the calls")
    parser.add_argument("--local-barge-in", action="store_true", help="agent.local_barge_in on")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--save", action="store_true", help="also write tests/perf/reports/")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        out = Path(__file__).resolve().parent / "reports"
        out.mkdir(exist_ok=True)
        name = "barge_in_local.json" if args.local_barge_in else "barge_in.json"
        (out / name).write_text(text + "\n")


if __name__ == "__main__":
    main()
