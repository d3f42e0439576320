"""Local barge-in against noise and speech, through real calls with the agent talking.

A real gateway process, the fake Realtime service (its answer: 110 s of espeak-ng speech, so
the agent is always talking), SIPp calls whose media is a Python phone on loopback. In the
noise calls the service's own VAD is set to its least sensitive (threshold 1.0, -30 dBFS), so
that what stops the agent is the gateway's local detector and nothing else: the service never
confirms a pause, the worst case. The speech calls have a gateway and a service of their own,
the service's VAD at the Realtime default (threshold 0.5: -50 dBFS for the fake), which hears
a caller at -35 dBFS as a real service does, so that a local pause it confirms is the caller's
(``--speech-service-threshold 1.0`` gives the older, deaf service).

* Noise (one call per kind of :mod:`barge_in_sets`, ``--noise-s`` each, at ``--noise-dbfs``):
  every gap in the agent's audio while the noise plays is a false cut-off; reported per
  10 minutes, and when each began (``cut_off_at_s``, seconds after the noise came on). The
  echo kinds are the phone sending back what it hears, 6, 12 and 20 dB down,
  through a gateway with ``agent.echo_suppression`` on as well (the echo's remedy).
* Speech (a call per voice and level, the caller's opening words at that level): each item of the
  speech set, said over the answer; missed when the agent is still heard 400 ms after the
  caller started (local pre-emption stops it within ~100 ms; the service's VAD takes longer).
  Reported per speech kind and level: missed, and onset (first packet of the word) to the
  agent's last packet, p50/p99; per level, the local pauses (the gateway's log) against the
  items said: an item the service stopped before the local detector heard it has none.
* CPU: the gateway process's CPU seconds during the noise phase per call-second of agent
  speech, and the detector alone (in this process, the noise set at ``--noise-dbfs``) per
  call-second, with what that makes for 100 calls.

    .venv/bin/python tests/perf/bench_vad.py [--detector voice|energy|off] [--save]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import barge_in_sets as sets

from gateway.agent import EmbeddedRealtimeServer
from gateway.bridge.local_vad import LocalBargeIn
from gateway.config.agent import LocalBargeIn as LocalBargeInConfig
from gateway.media.resample import Resampler
from tests.integration.gateway_proc import GatewayProcess
from tests.integration.peers import PeerError, Sipp
from tests.integration.rtp_caller import RtpCaller
from tests.integration.scenarios import sipp_dial

ANSWER_S = 110.0  # < media.playback_buffer_s: all of it is kept
MISSED_AFTER_MS = 400.0
ECHO_LOSSES = (6.0, 12.0, 20.0)
SPEECH_LEVELS = (-15.0, -20.0, -25.0, -30.0, -35.0)


def answer() -> tuple[np.ndarray, str]:
    """The agent's voice, 24 kHz, ANSWER_S long, sent by the fake at 20x real time."""
    at8k = sets.agent_far_end(int(ANSWER_S * sets.RATE))
    up = Resampler(sets.RATE, 24000)
    pcm = np.concatenate((up.process(at8k), up.flush()))
    return pcm.astype(np.int16), sets.AGENT_TEXT


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values)
    p50, p99 = np.percentile(a, [50, 99])
    return {"n": len(values), "p50": round(float(p50), 1), "p99": round(float(p99), 1)}


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Rig:
    """One gateway and the fake service; places calls that ask, then hear the answer."""

    def __init__(self, workdir: Path, agent: dict[str, Any]) -> None:
        self.workdir, self.agent = workdir, agent
        self.sipps: list[Sipp] = []
        self.calls = 0

    async def __aenter__(self) -> Rig:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fake = await EmbeddedRealtimeServer(answer=answer(), burst_speed=20.0).__aenter__()
        config = {
            "realtime": {"url": self.fake.url, "auth": {"method": "none"}},
            "agent": self.agent,
            "logging": {"level": "info"},
            "service": {"drain_timeout_s": 0},
        }
        self.gateway = await GatewayProcess(self.workdir, config).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.gateway.stop()
            for sipp in self.sipps:
                try:
                    await sipp.wait(15)
                except PeerError:
                    if exc[0] is None:
                        raise  # else the error that ended the run is the one to see
        finally:
            await self.fake.__aexit__(None, None, None)

    async def call(self, phone: RtpCaller, first: np.ndarray) -> None:
        """Dial, ask (``first``: the caller's opening words), and wait until the answer has
        been heard for a second."""
        self.calls += 1
        sipp = sipp_dial(
            self.workdir / f"call{self.calls}", self.gateway.port, phone.port, timeout_ms=3_600_000
        )
        self.sipps.append(sipp)
        await sipp.start()
        await phone.wait_until(lambda: bool(phone.heard), 20, "the gateway's first packet")
        sent = len(phone.speech_sent_at)
        phone.say(first)
        await phone.wait_until(lambda: len(phone.speech_sent_at) > sent, 10, "the first turn")
        heard = phone.sound_packets  # the answer, after the first turn
        await phone.wait_until(
            lambda: phone.sound_packets >= heard + 50, 40, "a second of the answer"
        )


async def noise_call(
    rig: Rig, kind: str, pcm: np.ndarray, echo_db: float | None, caller_dbfs: float
) -> dict:
    phone = await RtpCaller(echo_gain_db=None if echo_db is None else -echo_db).open()
    try:
        await rig.call(phone, sets.first_turn(sets.VOICES[0], caller_dbfs))
        before, heard = len(phone.spurts()), len(phone.heard)
        said = len(phone.speech_sent_at)
        phone.say(pcm)
        seconds = len(pcm) / sets.RATE
        # the gateway sends a packet every 20 ms, silence included: that is the noise's clock
        end = heard + int(seconds * 50) + 10
        await phone.wait_until(lambda: len(phone.heard) >= end, seconds + 30, "the noise played")
        spurts = phone.spurts()[before - 1 :]
        gaps = [round((b[0].at - a[-1].at) * 1000) for a, b in itertools.pairwise(spurts)]
        start = phone.speech_sent_at[said] if len(phone.speech_sent_at) > said else 0.0
        at_s = [round(a[-1].at - start, 1) for a, _ in itertools.pairwise(spurts)]
        return {
            "kind": kind,
            "seconds": seconds,
            "cut_offs": len(gaps),
            "gaps_ms": gaps,
            "at_s": at_s,
        }
    finally:
        phone.close()


def talking(phone: RtpCaller, packets: int) -> bool:
    """The agent is being heard now, and has been for `packets` packets."""
    spurts = phone.spurts()
    return bool(spurts) and len(spurts[-1]) >= packets and spurts[-1][-1] is phone.heard[-1]


async def speech_call(rig: Rig, items: list[sets.SpeechItem], loudest: float) -> list[dict]:
    """One caller (a voice at a level): their opening words at that level (at ``loudest`` for
    quieter items: the deaf service, at -30 dBFS, might not take theirs for a turn), then the
    items."""
    phone = await RtpCaller().open()
    out = []
    try:
        await rig.call(phone, sets.first_turn(items[0].voice, max(items[0].dbfs, loudest)))
        done = 0  # packets heard by the time everything said so far has gone out
        for k, item in enumerate(items):
            await phone.wait_until(
                lambda d=done: len(phone.heard) >= d and talking(phone, 25),
                40,
                f"half a second of the answer before item {k} ({item.name}), after {out[-1:]}",
            )
            n = len(phone.spurts())
            phone.say(item.pcm)
            # ...and 1.5 s more: the service's turn for the last item (a new answer) is over
            done = len(phone.heard) + len(item.pcm) // 160 + 75
            said = len(phone.speech_sent_at)
            await phone.wait_until(lambda s=said: len(phone.speech_sent_at) > s, 5, "the word")
            try:
                await phone.wait_until(  # silence heard, or the next spurt begun
                    lambda n=n: len(phone.spurts()) > n or not talking(phone, 0), 3, "a pause"
                )
                ms = (phone.spurts()[n - 1][-1].at - phone.speech_sent_at[-1]) * 1000
            except AssertionError:
                ms = float("inf")
            out.append({"kind": item.kind.split(":")[0], "dbfs": item.dbfs, "ms": ms})
        # the last item said to its end: hung up at once, the service would not hear it
        # enough to confirm the local pause, which would count as unconfirmed
        await phone.wait_until(lambda: not phone.speaking, 10, "the last item said")
        with contextlib.suppress(AssertionError):  # the service's answer to it, if it comes
            await phone.wait_until(lambda: talking(phone, 25), 10, "the answer to it")
        return out
    finally:
        phone.close()


async def noise_phase(
    rig: Rig, erig: Rig, kinds: list[str], args: argparse.Namespace
) -> list[dict]:
    c = args.caller_dbfs
    tasks = [
        noise_call(rig, k, sets.noise(k, args.noise_dbfs, args.noise_s), None, c) for k in kinds
    ]
    silent = np.zeros(int(args.noise_s / 3 * sets.RATE), dtype=np.int16)
    tasks += [noise_call(erig, f"echo{db:g}", silent, db, c) for db in ECHO_LOSSES]
    return list(await asyncio.gather(*tasks))


def detector_cpu(
    detector: str, noise_dbfs: float, caller_dbfs: float, extra: dict[str, Any]
) -> dict[str, float]:
    """The detector alone on the noise set, fed 20 ms packets as the bridge does, told that
    the service did not confirm an onset ``confirm_ms`` after it (as the bridge tells it)."""
    cfg = LocalBargeInConfig(detector=detector, **extra)  # type: ignore[arg-type]
    local = LocalBargeIn(
        cfg.level,
        cfg.min_speech_ms,
        cfg.confirm_ms,
        cfg.detector,
        below_caller_db=cfg.below_caller_db,
    )
    first = sets.first_turn(sets.VOICES[0], caller_dbfs)
    for p in first[: len(first) // 160 * 160].reshape(-1, 160):
        local.onset(p, talking=False)  # the caller's level, learned
    audio = np.concatenate([sets.noise(k, noise_dbfs) for k in sets.NOISES if k != "echo"])
    packets = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    confirm_packets = cfg.confirm_ms // 20
    due = None  # the packet at which the service has not confirmed the last onset
    t0 = time.process_time()
    for k, p in enumerate(packets):
        if local.onset(p) and due is None:
            due = k + confirm_packets
        if k == due:  # as the bridge does: noise, learned as the line's
            local.unconfirmed()
            due = None
    per_s = (time.process_time() - t0) / (len(packets) / 50)
    return {
        "us_per_call_second": round(per_s * 1e6, 1),
        "pct_core_100_calls": round(per_s * 100 * 100, 2),
    }


def local_pauses(rig: Rig) -> dict[str, int]:
    return {
        e: len(rig.gateway.find(f"call.local_barge_in_{e}")) for e in ("confirmed", "unconfirmed")
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if args.below_caller_db is not None:
        extra["below_caller_db"] = None if args.below_caller_db < 0 else args.below_caller_db
    if args.min_speech_ms is not None:
        extra["min_speech_ms"] = args.min_speech_ms
    local: dict[str, Any] | None = (
        None if args.detector == "off" else {"detector": args.detector, **extra}
    )
    base = {"turn_detection": {"type": "server_vad", "threshold": 1.0}, "local_barge_in": local}
    st = args.speech_service_threshold
    opening = -25.0 if st > 0.5 else -60.0  # the quietest opening words the service hears
    kinds = [k for k in sets.NOISES if k != "echo"]
    voices = sets.VOICES[: args.voices]
    items = [i for i in sets.speech_set(tuple(args.levels)) if i.voice in voices]
    report: dict[str, Any] = {
        "benchmark": "vad",
        "python": platform.python_version(),
        "detector": args.detector,
        "noise_dbfs": args.noise_dbfs,
        "caller_dbfs_in_noise_calls": args.caller_dbfs,
        "service_vad_threshold_in_speech_calls": args.speech_service_threshold,
        "local_barge_in": local,
        "load_average_at_start": os.getloadavg(),
    }
    keep = os.environ.get("BENCH_VAD_KEEP")  # a directory: the gateways' logs stay there
    with (
        contextlib.nullcontext(keep)
        if keep
        else tempfile.TemporaryDirectory(prefix="bench-vad-") as tmp
    ):
        echo_agent = {**base, "echo_suppression": {}}
        speech_agent = {**base, "turn_detection": {"type": "server_vad", "threshold": st}}
        async with (
            Rig(Path(tmp) / "a", base) as rig,
            Rig(Path(tmp) / "b", echo_agent) as erig,
            Rig(Path(tmp) / "c", speech_agent) as srig,
        ):
            cpu0 = cpu_s(rig.gateway.pid)
            rows = await noise_phase(rig, erig, kinds, args) if args.noise_s > 0 else []
            cpu = cpu_s(rig.gateway.pid) - cpu0
            report["local_pauses_noise_phase"] = {
                f"{name}_{e}": n
                for name, r in (("noise", rig), ("echo", erig))
                for e, n in local_pauses(r).items()
            }
            speech, paused = [], {}
            for lv in args.levels:  # a call per voice and level (< ANSWER_S), a level at a time
                calls = [[i for i in items if i.voice == v and i.dbfs == lv] for v in voices]
                before = local_pauses(srig)
                for rs in await asyncio.gather(*(speech_call(srig, c, opening) for c in calls)):
                    speech += rs
                after = local_pauses(srig)
                paused[f"{lv:g}"] = {
                    "items": sum(map(len, calls)),
                    **{e: after[e] - before[e] for e in after},
                }
            report["local_pauses_speech_phase"] = paused
    if os.environ.get("BENCH_VAD_DUMP"):
        print(json.dumps(speech), file=sys.stderr)
    if not rows:  # --noise-s 0: speech only
        rows = [{"kind": "none", "seconds": 1.0, "cut_offs": 0, "gaps_ms": []}]
    total_s = sum(r["seconds"] for r in rows)
    report["false_cut_offs_per_10min"] = {
        r["kind"]: round(r["cut_offs"] * 600 / r["seconds"], 1) for r in rows
    }
    steady = [r for r in rows if not r["kind"].startswith("echo")]
    report["false_cut_offs_per_10min_noise_set"] = round(
        sum(r["cut_offs"] for r in steady) * 600 / sum(r["seconds"] for r in steady), 2
    )
    report["gaps_ms"] = {r["kind"]: r["gaps_ms"] for r in rows if r["gaps_ms"]}
    # when each cut-off began, in seconds from the noise's start (a noise coming on is heard
    # before the background has learned it)
    report["cut_off_at_s"] = {r["kind"]: r["at_s"] for r in rows if r.get("at_s")}
    report["speech"] = {}
    for kind in sorted({r["kind"] for r in speech}):
        for lv in SPEECH_LEVELS:
            rs = [r for r in speech if r["kind"] == kind and r["dbfs"] == lv]
            hit = [r["ms"] for r in rs if r["ms"] <= MISSED_AFTER_MS]
            report["speech"][f"{kind}@{lv:g}"] = {
                "missed": len(rs) - len(hit),
                "onset_to_silence_ms": stats(hit),
            }
    loud = [r["ms"] for r in speech if r["dbfs"] >= -30 and r["ms"] <= MISSED_AFTER_MS]
    report["onset_to_silence_ms_at_-30_and_louder"] = stats(loud)
    report["missed_at_-30_and_louder"] = sum(
        r["ms"] > MISSED_AFTER_MS for r in speech if r["dbfs"] >= -30
    )
    noise_call_s = sum(r["seconds"] for r in steady)
    report["gateway_cpu_pct_per_call_talking"] = round(100 * cpu / noise_call_s, 3)
    report["noise_call_seconds"] = round(total_s, 1)
    report["load_average_at_end"] = os.getloadavg()
    if local is not None:
        report["detector_alone"] = detector_cpu(
            args.detector, args.noise_dbfs, args.caller_dbfs, extra
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", choices=("voice", "energy", "off"), default="voice")
    parser.add_argument("--noise-dbfs", type=float, default=-35.0)
    parser.add_argument("--caller-dbfs", type=float, default=-20.0, help="noise calls' caller")
    parser.add_argument("--below-caller-db", type=float, default=None, help="< 0: null (off)")
    parser.add_argument("--min-speech-ms", type=int, default=None)
    parser.add_argument(
        "--speech-service-threshold", type=float, default=0.5, help="the speech calls' service VAD"
    )
    parser.add_argument("--levels", type=float, nargs="+", default=list(SPEECH_LEVELS))
    parser.add_argument("--noise-s", type=float, default=sets.NOISE_S)
    parser.add_argument("--voices", type=int, default=len(sets.VOICES), help="speech voices")
    parser.add_argument("--save", action="store_true", help="also write tests/perf/reports/")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        out = Path(__file__).resolve().parent / "reports"
        out.mkdir(exist_ok=True)
        (out / f"vad_{args.detector}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
