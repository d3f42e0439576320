"""Load run: N concurrent calls through one gateway process, measured from the outside.

    .venv/bin/python tests/perf/bench_load.py [--calls 200] [--rate 20] [--measure-s 30]
                                              [--audio-format pcm16|g711] [--profile FILE]
                                              [--srtp | --compare]

Who plays what (all on loopback, each in its own process):

* SIPp places the calls (``-r`` calls/s up to ``--calls``), each offering the port of one
  socket of ``rtp_caller.py`` in its SDP, and hangs up once the run is over.
* ``rtp_caller.py`` is the callers' media: PCMU every 20 ms per call, and the kernel's receive
  time of every packet the gateway sends back (inter-packet gaps, losses).
* ``stream_service.py`` is the Realtime service: every session gets responses back to back,
  so every call's pacer sends model audio all the time (24 kHz PCM through soxr).
* The gateway as users run it (``python -m gateway run``), on pcm16 (soxr both ways) or
  g711 (passthrough).

Once every call is up, the gateway's CPU (/proc/PID/stat), its RSS and the callers' receive
statistics are taken over ``--measure-s``; the gateway's own end-of-call counters (rtp.stats)
are added up after SIPp hangs up.  ``--profile`` runs py-spy on the gateway during the window
(``pip install py-spy`` into the venv first; not a dependency).  Prints a JSON report.

``--srtp``: every call is SRTP (SDES, AES_CM_128_HMAC_SHA1_80).  Each call's RTP/SAVP offer
carries a key of its own, which ``rtp_caller.py`` makes and writes with the call's port into
SIPp's injection file; SIPp takes the gateway's key out of each 200 OK (``<ereg>``, the call
fails without one) and logs ``PORT KEY`` to a FIFO the callers read (``-log_file``), so the
callers protect and unprotect every packet with libsrtp, and count whatever fails.  Keys live
only in the run's temporary directory and these processes, never in the gateway's logs.  The
gateway's signalling is UDP here (SIPp has no TLS), hence ``srtp_over_insecure_signalling``.
``--compare``: a plain run, then an SRTP run, in one invocation (same machine, same minute),
with a summary of the two side by side.

``--console N --listen K``: the live console open during the window (N pages on the live
stream, K listen-ins; ``console_clients.py``). ``--console-compare``: runs without and with
them (ABBA with ``--rounds``), and the console's cost as the difference of the gateway's CPU.
``--local-compare``: runs with ``agent.local_barge_in`` (the default; the callers' voice-like
audio keeps its detector busy while the agent talks) and without it, likewise; ``--no-local``:
one run without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.gateway_proc import GatewayProcess
from tests.integration.peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from tests.integration.rtp_peer import uac_until_bye
from tests.perf.console_clients import ConsoleLoad, console_share

SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"
# On the 200 OK: the gateway's key for the call (no a=crypto of this suite: the call fails),
# logged with the caller's port for rtp_caller.py.
_ANSWER_KEY = f"""  <recv response="200">
    <action>
      <ereg regexp="a=crypto:[0-9]+ {SRTP_SUITE} inline:([A-Za-z0-9+/]+=*)" search_in="msg"
            check_it="true" assign_to="crypto_line,answer_key"/>
      <log message="[field0] [$answer_key]"/>
    </action>"""

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS  # utime, stime


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def machine_busy_seconds() -> float:
    """CPU seconds spent by everything on the machine (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS


def udp_drops() -> int:
    """Datagrams the kernel dropped because a socket's receive buffer was full (machine-wide)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Udp:")]  # fmt: skip
    return int(rows[1][rows[0].index("RcvbufErrors")])


def debug_state(metrics_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{metrics_url}/debug/state", timeout=10) as response:
        return json.loads(response.read())


def latency_histograms(metrics_url: str) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts (le -> count) of the gateway-added latency histograms."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("sipgw_uplink_latency_seconds", "sipgw_downlink_latency_seconds"):
            direction = family.name.split("_")[1]
            found[direction] = {
                float(sample.labels["le"]): sample.value
                for sample in family.samples
                if sample.name.endswith("_bucket")
            }
    return found


def quantile_ms(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket the quantile falls in."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank, below, lower = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return round(lower * 1000, 2)  # beyond the last bound: its value is all we know
            share = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (bound - lower) * share) * 1000, 2)
        below, lower = count, bound
    return None


def latency_in_window(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for direction, buckets in after.items():
        delta = {le: n - before.get(direction, {}).get(le, 0.0) for le, n in buckets.items()}
        report[direction] = {
            "samples": int(delta[float("inf")]),
            "p50_ms": quantile_ms(delta, 0.5),
            "p99_ms": quantile_ms(delta, 0.99),
        }
    return report


def srtp_uac(path: Path, hangup_after_ms: int) -> Path:
    """uac_until_bye's call, offering RTP/SAVP with the call's key from the injection file
    (``[field1]``) and logging the answer's key."""
    xml = uac_until_bye(path, "[field0]", hangup_after_ms).read_text()
    for old, new in (
        ("m=audio [field0] RTP/AVP ", "m=audio [field0] RTP/SAVP "),
        ("a=ptime:20\n", f"a=ptime:20\n      a=crypto:1 {SRTP_SUITE} inline:[field1]\n"),
        ('  <recv response="200">', _ANSWER_KEY),
        ("</scenario>", '  <Reference variables="crypto_line"/>\n</scenario>'),
    ):
        if xml.count(old) != 1:
            raise RuntimeError(f"uac_until_bye's scenario changed: {old!r}")
        xml = xml.replace(old, new)
    path.write_text(xml)
    return path


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (sched_setaffinity takes one thread at a time)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


async def json_line(stream: asyncio.StreamReader, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            line = await stream.readline()
            if not line:
                raise RuntimeError("process exited before printing its JSON line")
            with contextlib.suppress(ValueError):
                return json.loads(line)


async def run(args: argparse.Namespace, workdir: Path, mode: str) -> dict[str, Any]:
    """One run: ``mode`` plain, srtp (every call SRTP), console (its pages open during the
    window) or no_local (``agent.local_barge_in: null``)."""
    srtp, console, local_barge_in = mode == "srtp", mode == "console", mode != "no_local"
    n = args.calls
    load_before = os.getloadavg()
    service = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "stream_service.py"),
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert service.stdout is not None
    url = (await json_line(service.stdout, 20))["url"]

    caller_base = free_port_block(2 * n)
    inf = workdir / "calls.csv"
    answers = workdir / "answer-keys.fifo"
    srtp_args = []
    if srtp:  # the callers write the injection file (ports and keys) and read the answers
        os.mkfifo(answers, 0o600)
        srtp_args = ["--srtp-csv", str(inf), "--srtp-answers", str(answers)]
    caller = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "rtp_caller.py"), "--base", str(caller_base), "--calls", str(n),
        *srtp_args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert caller.stdin is not None and caller.stdout is not None
    await json_line(caller.stdout, 20)

    rtp = free_port_block(2 * n + 20)
    config = {
        "sip": {"max_calls": n + 10},
        "media": {
            "rtp_port_min": rtp,
            "rtp_port_max": rtp + 2 * n + 19,
            # SIPp has no TLS: the keys travel over UDP signalling on loopback
            **({"srtp": "optional", "srtp_over_insecure_signalling": True} if srtp else {}),
        },
        "realtime": {
            "url": url,
            "auth": {"method": "none"},
            "connect_timeout_s": 20,
            "audio_format": args.audio_format,
        },
        "logging": {"level": "info"},
        "metrics": {"debug_state": True},  # read before and after the run
        **({} if local_barge_in else {"agent": {"local_barge_in": None}}),  # on: the default
    }
    api_port = free_udp_port(also_tcp=True)
    if console:  # loopback, no token
        config["api"] = {"bind": LOOPBACK, "port": api_port}
    gateway = GatewayProcess(workdir, config)
    await gateway.start()
    pid = gateway.pid
    assert pid is not None
    # As media servers are deployed (FreeSWITCH -rp, Asterisk -p): ahead of batch work.
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, pid, args.nice)
    if args.rr:
        os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(args.rr))
    if args.pin:  # the gateway on a core of its own, the rig (service, callers) on the rest
        cores = sorted(os.sched_getaffinity(0))
        pin(pid, {cores[0]})
        for rig in (service.pid, caller.pid):
            pin(rig, set(cores[1:]))
    rss_idle = rss_mib(pid)

    ramp_s = n / args.rate
    hangup_ms = int((ramp_s + args.settle_s + args.measure_s + 10) * 1000)
    if srtp:
        scenario = srtp_uac(workdir / "uac.xml", hangup_ms)
        logs = ["-trace_logs", "-log_file", answers]
    else:
        inf.write_text("SEQUENTIAL\n" + "".join(f"{caller_base + 2 * i};\n" for i in range(n)))
        scenario, logs = uac_until_bye(workdir / "uac.xml", "[field0]", hangup_ms), []
    sipp = Sipp(
        workdir,
        [
            "-sf", scenario, "-inf", inf, *logs,
            "-m", n, "-l", n, "-r", args.rate, "-i", LOOPBACK, "-p", free_udp_port(),
            "-mp", free_port_block(4), "-s", "agent", "-timeout", int(hangup_ms / 1000 + 60),
            "-timeout_error", f"{LOOPBACK}:{gateway.port}",
        ],
        trace=False,
    )  # fmt: skip
    await sipp.start()
    if args.pin and sipp.proc is not None:
        pin(sipp.proc.pid, set(sorted(os.sched_getaffinity(0))[1:]))

    # Hand each answered call's ports to the callers as the gateway logs them.
    seen = answered = 0
    failures: list[dict[str, Any]] = []
    while answered + len(failures) < n:
        events = await gateway.events_after(seen, timeout=60)
        seen += len(events)
        for event in events:
            if event.get("event") == "call.answered":
                if event.get("srtp") != (SRTP_SUITE if srtp else None):
                    failures.append({"event": f"answered with srtp={event.get('srtp')}"})
                    continue
                local = event["rtp_local"].rsplit(":", 1)[1]
                remote = event["rtp_remote"].rsplit(":", 1)[1]
                caller.stdin.write(f"call {remote} {local}\n".encode())
                answered += 1
            elif event.get("event") in ("call.rejected", "call.failed"):
                failures.append(event)
        await caller.stdin.drain()
    if not answered:
        raise RuntimeError(f"no call answered: {failures[:3]}\n{gateway.tail()}")

    await asyncio.sleep(args.settle_s)  # let every call reach its steady state
    rss_loaded = rss_mib(pid)
    # The gateway's own readings (a /debug/state walk of every object, a /metrics scrape) stop
    # its loop for milliseconds: taken outside the callers' measurement, not inside it.
    before = await asyncio.to_thread(debug_state, gateway.metrics_url)
    latency0 = await asyncio.to_thread(latency_histograms, gateway.metrics_url)
    pages = None
    if console:
        pages = ConsoleLoad(f"http://{LOOPBACK}:{api_port}", args.console, args.listen)
        await pages.start()
        pages.reset()
    caller.stdin.write(b"measure\n")
    await caller.stdin.drain()
    assert sipp.proc is not None
    pids = {"gateway": pid, "service": service.pid, "callers": caller.pid, "sipp": sipp.proc.pid}
    cpu0 = {name: cpu_seconds(p) for name, p in pids.items()}
    split0 = cpu_split(pid)
    busy0 = machine_busy_seconds()
    drops0 = udp_drops()
    t0 = time.monotonic()
    profiler = None
    if args.profile:
        profiler = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
            "-d", str(int(args.measure_s)), "-f", "raw", "-o", args.profile, "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    await asyncio.sleep(args.measure_s)  # the measurement window itself
    elapsed = time.monotonic() - t0
    cpu = {name: round((cpu_seconds(p) - cpu0[name]) / elapsed, 3) for name, p in pids.items()}
    split1 = cpu_split(pid)
    user, system = (round((split1[i] - split0[i]) / elapsed, 3) for i in (0, 1))
    # Other sessions on the machine compete for the same cores: say how much they took.
    machine = (machine_busy_seconds() - busy0) / elapsed
    cpu["everything_else"] = round(machine - sum(cpu.values()), 3)
    drops = udp_drops() - drops0
    console_report = pages.report(elapsed) if pages is not None else None
    if pages is not None:
        await pages.stop()
    caller.stdin.write(b"stop\n")
    await caller.stdin.drain()
    received = await json_line(caller.stdout, 30)
    state = await asyncio.to_thread(debug_state, gateway.metrics_url)
    latency1 = await asyncio.to_thread(latency_histograms, gateway.metrics_url)
    latency = latency_in_window(latency0, latency1)
    if profiler is not None:
        await profiler.wait()
        if console_report is not None:  # the console's own share of the gateway's work
            share = console_share(args.profile)
            console_report["profile"] = share
            console_report["console_cpu_cores"] = round(share["share"] * cpu["gateway"], 4)

    code = await sipp.wait(timeout=hangup_ms / 1000 + 120)
    await gateway.wait_for(
        "call.ended", timeout=60, where=lambda e: len(gateway.find("call.ended")) >= answered
    )
    rss_after = rss_mib(pid)
    # The last call's end ran a full collection: what cyclic garbage the calls left for it,
    # and how long it took (the longest generation-2 pause so far).
    after = await asyncio.to_thread(debug_state, gateway.metrics_url)
    full = {**after["gc_full_collections"], "gen2_max_ms": after["gc_pauses"]["gen2"]["max_ms"]}
    load_after = os.getloadavg()
    await gateway.stop()
    # The offered keys (the injection file's second field) must appear nowhere in its log.
    offered = [line.split(";")[1] for line in inf.read_text().splitlines()[1:]] if srtp else []
    gateway_log = gateway.log_path.read_text(errors="replace")
    keys_in_log = sum(key in gateway_log for key in offered)
    service.terminate()
    await service.wait()
    await caller.wait()

    stats = gateway.find("rtp.stats")
    ended = gateway.find("call.ended")
    dropped = [e.get("reason") for e in ended if e.get("reason") != "caller_bye"]
    totals = {
        key: sum(s.get(key, 0) for s in stats)
        for key in ("packets_in", "packets_out", "lost", "late", "duplicates", "reordered",
                    "late_sends", "skipped_sends", "filled_ms", "srtp_auth_failures",
                    "srtp_replayed")
    }  # fmt: skip
    return {
        "benchmark": "load_concurrent_calls",
        "calls": n,
        "srtp": SRTP_SUITE if srtp else None,
        "audio_format": args.audio_format,
        "local_barge_in": local_barge_in,
        "gateway_nice": args.nice,
        "pinned": args.pin,
        "gateway_sched_rr_priority": args.rr,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        # Other sessions share the machine: its 1/5/15-minute load averages around the run.
        "load_average_before_after": [
            [round(x, 2) for x in load_before],
            [round(x, 2) for x in load_after],
        ],
        "sipp_exit_code": code,
        "calls_attempted_answered_failed": [n, answered, len(failures)],
        "failures": [e.get("reason") or e.get("event") for e in failures][:10],
        # Answered calls the gateway ended before the caller hung up (it should be none).
        "calls_ended_by_the_gateway": len(dropped),
        "end_reasons_of_those": sorted(set(map(str, dropped)))[:10],
        "measure_s": round(elapsed, 1),
        "outbound_as_received_by_callers": received,
        # Nothing lost means both ways: the callers count the gateway's packets they never got;
        # the gateway counts the callers' packets that never reached it (its sockets' buffers
        # overflow when it cannot keep up: a saturated gateway loses the uplink first, because
        # its pacer runs ahead of everything else).
        "lost": {
            "outbound_at_callers": received.get("lost"),
            "inbound_at_gateway": totals["lost"],
            "udp_receive_buffer_drops_in_window": drops,
        },
        "udp_receive_buffer_drops_machine_wide": drops,
        "gateway_rtp_stats_summed_over_calls": totals,
        # From the gateway's own histograms (buckets 0.5-320 ms, so interpolated estimates).
        # Downlink is measured from a delta that finds playback idle to its first packet: with
        # a service that never pauses, that is each call's first answer, mostly before the
        # window; uplink is every append (RTP arrival to WebSocket send).
        "gateway_added_latency_in_window": latency,
        "gateway_added_latency_whole_run": latency_in_window({}, latency1),
        "cpu_cores": cpu,
        "gateway_cpu_user_system": [user, system],
        "gateway_rss_mib": {
            "idle": round(rss_idle, 1),
            "with_calls": round(rss_loaded, 1),
            "after_calls": round(rss_after, 1),
            "growth_per_call": round((rss_loaded - rss_idle) / n, 3),
        },
        "gateway_gc_pauses_since_start": state["gc_pauses"],
        "gateway_gc_collections_in_window": {
            gen: state["gc_pauses"][gen]["count"] - before["gc_pauses"][gen]["count"]
            for gen in state["gc_pauses"]
        },
        "gateway_gc_in_window": {  # the pauses of each generation: how long, in all
            gen: {
                key: round(state["gc_pauses"][gen][key] - before["gc_pauses"][gen][key], 1)
                for key in ("over_2ms", "total_ms")
            }
            for gen in state["gc_pauses"]
        },
        "gateway_gc_objects_with_calls": state["gc_objects"],
        "gateway_gc_full_collection_after_calls": full,
        "profile": args.profile,
        "srtp_keys_found_in_gateway_log": keys_in_log if srtp else None,
        "console": console_report,
    }


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The pacing targets (gap p99 <= 22 ms, max <= 30 ms, nothing lost either way, nothing
    refused by SRTP at either end), each with the figure it was judged on."""
    received = report["outbound_as_received_by_callers"]
    gaps, lost, stats = (
        received["gap_ms"],
        report["lost"],
        report["gateway_rtp_stats_summed_over_calls"],
    )
    srtp_callers = received.get("srtp") or {}
    refused = {
        "callers": sum(srtp_callers.get(k, 0) for k in ("auth_failures", "replayed",
                                                         "other_errors",
                                                         "before_answer_key_in_window")),
        "gateway": stats["srtp_auth_failures"] + stats["srtp_replayed"],
    }  # fmt: skip
    met = {
        "gap_p99_le_22ms": gaps["p99"] <= 22,
        "gap_max_le_30ms": gaps["max"] is not None and gaps["max"] <= 30,
        "nothing_lost": not any(lost.values()),
        "nothing_refused_by_srtp": not any(refused.values()),
        "no_key_in_gateway_log": not report["srtp_keys_found_in_gateway_log"],
        "every_call_answered_and_kept": (
            report["calls_attempted_answered_failed"][2] == 0
            and report["calls_ended_by_the_gateway"] == 0
        ),
    }
    return {"all_met": all(met.values()), **met, "srtp_refused": refused}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """One run's headline figures, for the side-by-side of --compare."""
    received = report["outbound_as_received_by_callers"]
    return {
        "gateway_cpu_cores": report["cpu_cores"]["gateway"],
        "gateway_cpu_user_system": report["gateway_cpu_user_system"],
        "callers_cpu_cores": report["cpu_cores"]["callers"],
        "everything_else_cpu_cores": report["cpu_cores"]["everything_else"],
        "gateway_rss_mib_with_calls": report["gateway_rss_mib"]["with_calls"],
        "gateway_rss_growth_per_call_mib": report["gateway_rss_mib"]["growth_per_call"],
        "gap_ms": received["gap_ms"],
        "callers_window_s": received["window_s"],
        "lost": report["lost"],
        "srtp_at_callers": received.get("srtp"),
        "srtp_at_gateway": {
            k: report["gateway_rtp_stats_summed_over_calls"][k]
            for k in ("srtp_auth_failures", "srtp_replayed")
        },
        "load_average_before_after": report["load_average_before_after"],
        "console": report["console"],
        "targets": report["targets"],
    }


async def run_modes(args: argparse.Namespace) -> dict[str, Any]:
    other = "console" if args.console_compare else "no_local" if args.local_compare else "srtp"
    if not (args.compare or args.console_compare or args.local_compare):
        single = "no_local" if args.no_local else "console" if args.console else "plain"
        modes = ["srtp" if args.srtp else single]
    else:  # ABBA...: a drift of the machine's speed weighs on both modes alike
        modes = [m for i in range(args.rounds) for m in (("plain", other), (other, "plain"))[i % 2]]
    runs = []
    for mode in modes:
        if args.keep:  # logs, scenario and SIPp's files stay for a look afterwards
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-load-{mode}-"))
            report = await run(args, workdir, mode)
            report["workdir"] = str(workdir)
        else:
            with tempfile.TemporaryDirectory(prefix=f"bench-load-{mode}-") as tmp:
                report = await run(args, Path(tmp), mode)
        report["mode"] = mode
        report["targets"] = targets(report)
        runs.append(report)
    if len(modes) == 1:
        return runs[0]

    def median(mode: str, figure: str) -> float:
        return statistics.median(summary(r)[figure] for r in runs if r["mode"] == mode)

    figures = ("gateway_cpu_cores", "callers_cpu_cores", "everything_else_cpu_cores")
    medians = {mode: {f: median(mode, f) for f in figures} for mode in ("plain", other)}
    cpu = {mode: medians[mode]["gateway_cpu_cores"] for mode in medians}
    return {
        "benchmark": f"load_plain_vs_{other}",
        "calls": args.calls,
        "order": modes,
        "summary": [{"mode": r["mode"], **summary(r)} for r in runs],
        "medians": medians,
        f"gateway_cpu_{other}_over_plain": round(cpu[other] / cpu["plain"], 3),
        # The console's own cost: the gateway's CPU with the pages open, less without.
        f"gateway_cpu_cores_{other}_minus_plain": round(cpu[other] - cpu["plain"], 3),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20, help="new calls per second")
    parser.add_argument("--settle-s", type=float, default=5)
    parser.add_argument("--measure-s", type=float, default=30)
    parser.add_argument("--audio-format", choices=["pcm16", "g711"], default="pcm16")
    parser.add_argument("--nice", type=int, default=0, help="gateway's nice value (root: < 0)")
    parser.add_argument(
        "--pin", action="store_true", help="the gateway on the first CPU, the rig on the others"
    )
    parser.add_argument("--rr", type=int, default=0, help="run the gateway SCHED_RR (root)")
    parser.add_argument("--profile", help="write a py-spy raw profile of the gateway here")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--srtp", action="store_true", help=f"every call SRTP ({SRTP_SUITE})")
    mode.add_argument("--compare", action="store_true", help="a plain run, then an SRTP run")
    mode.add_argument(
        "--console-compare", action="store_true", help="a run without the console, one with"
    )
    mode.add_argument(
        "--local-compare",
        action="store_true",
        help="a run with agent.local_barge_in (the default), one without",
    )
    mode.add_argument(
        "--no-local",
        action="store_true",
        help="one run without agent.local_barge_in (the gateway as it was before issue 21)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="--compare: pairs of runs (ABBA)")
    parser.add_argument("--console", type=int, default=0, help="console pages open (live stream)")
    parser.add_argument("--listen", type=int, default=0, help="console listen-ins (one call each)")
    args = parser.parse_args()
    if args.console_compare and not (args.console or args.listen):
        args.console = 3
    if (args.compare or args.console_compare) and args.profile:
        parser.error("--profile goes with one run (plain, or --srtp)")
    print(json.dumps(asyncio.run(run_modes(args)), indent=2))


if __name__ == "__main__":
    main()
