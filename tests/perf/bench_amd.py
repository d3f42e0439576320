"""Answering-machine detection over the labelled set (:mod:`amd_set`): accuracy and timing.

Each item of the set (voicemail greetings with and without a beep, short human answers,
espeak-ng at telephone quality) is fed, 20 ms frame by 20 ms frame on its own clock, to the
call's screen (:class:`gateway.bridge.screening.AnswerScreen`, voicemail mode, the default
parameters: Asterisk app_amd's), ticking it at its deadlines as the call's timer does. The
JSON report:

* ``confusion``: label -> decided result (human, machine, unknown), and ``accuracy``
  (unknown counts as wrong);
* ``decision_ms``: time from the answer to the decision, p50/p95 per label;
* ``beep``: on machines with a beep, ``hits`` (the message started after the beep, within
  200 ms of its end; a machine taken for a person is a miss), and ``false_alarms``: a beep
  reported by the tone detector alone anywhere in an item without one (human answers and
  machines that record in silence), or within the greeting of one that has a beep;
* ``voicemail``: on machines, how the message started (beep, silence, timeout), when
  relative to the end of the beep (or of the greeting when there is none), p50/p95, and how
  many started before the greeting had ended (spoken over it).

    .venv/bin/python tests/perf/bench_amd.py [--set-dir DIR] [--verbose] [--param NAME=VALUE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.bridge.screening import AnswerScreen, Decided, LeaveMessage
from gateway.config import AmdConfig
from gateway.media.beep import BeepDetector
from tests.perf import amd_set

FRAME = 160  # 20 ms at 8 kHz


def run_item(pcm: np.ndarray, cfg: AmdConfig) -> dict[str, Any]:
    """The screen over one item: the decision and the message's start, with their times."""
    screen = AnswerScreen("voicemail", cfg)
    screen.start(0.0)
    out: dict[str, Any] = {}
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        now = (i + FRAME) / amd_set.RATE
        deadline = screen.deadline
        outcomes = list(screen.tick(now)) if deadline is not None and now >= deadline else []
        outcomes += screen.audio(pcm[i : i + FRAME], now)
        for outcome in outcomes:
            if isinstance(outcome, Decided):
                d = outcome.decision
                out.update(result=d.result, cause=d.cause, decided_s=now)
            elif isinstance(outcome, LeaveMessage):
                out.update(left=outcome.after, left_s=now)
        if screen.state == screen.DONE:
            break
    return out


def beeps_in(pcm: np.ndarray) -> list[float]:
    """The tone detector alone over a whole item: when each beep it reports ends (s)."""
    detector = BeepDetector(amd_set.RATE)
    return [
        (i + FRAME) / amd_set.RATE
        for i in range(0, len(pcm) - FRAME + 1, FRAME)
        if detector.feed(pcm[i : i + FRAME]) is not None
    ]


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def report(
    items: list[amd_set.Item], directory: Path, verbose: bool, params: dict[str, Any]
) -> dict[str, Any]:
    cfg = AmdConfig(mode="voicemail", voicemail_message="A test message.", **params)
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    causes: dict[str, Counter[str]] = defaultdict(Counter)
    times: dict[str, list[float]] = defaultdict(list)
    hits = misses = false_alarms = early_beeps = over = 0
    how: Counter[str] = Counter()
    after_end: dict[str, list[float]] = defaultdict(list)
    for item in items:
        pcm = amd_set.read(directory / f"{item.name}.wav")
        got = run_item(pcm, cfg)
        result = got.get("result", "none")
        confusion[item.label][result] += 1
        causes[item.label][got.get("cause", "none")] += 1
        times[item.label].append(got.get("decided_s", 0.0) * 1000)
        if verbose:
            print(item.name, item.label, got, file=sys.stderr)
        found = beeps_in(pcm)
        if item.beep_end_s is None:
            false_alarms += len(found)
        else:
            false_alarms += sum(1 for t in found if t < item.speech_end_s)
            early_beeps += sum(1 for t in found if item.speech_end_s <= t < item.beep_end_s - 0.1)
            left_s = got.get("left_s", -1.0)
            hit = got.get("left") == "beep" and 0 <= left_s - item.beep_end_s <= 0.2
            hits, misses = hits + hit, misses + (not hit)
        if item.label != "machine" or "left" not in got:
            continue
        how[got["left"]] += 1
        end = item.beep_end_s if item.beep_end_s is not None else item.speech_end_s
        after_end["beep" if item.beep_end_s is not None else "no_beep"].append(
            (got["left_s"] - end) * 1000
        )
        over += got["left_s"] < item.speech_end_s
    right = sum(confusion[label][label] for label in confusion)
    return {
        "items": {label: sum(c.values()) for label, c in confusion.items()},
        "accuracy": round(right / len(items), 3),
        "confusion": {label: dict(c) for label, c in confusion.items()},
        "causes": {label: dict(c) for label, c in causes.items()},
        "decision_ms": {
            label: {"p50": pct(v, 50), "p95": pct(v, 95), "max": pct(v, 100)}
            for label, v in times.items()
        },
        "beep": {
            "items_with_beep": sum(1 for i in items if i.beep_end_s is not None),
            "hits": hits,
            "missed": misses,
            "items_without_beep": sum(1 for i in items if i.beep_end_s is None),
            "false_alarms": false_alarms,
            "early_reports_in_gap": early_beeps,
        },
        "voicemail": {
            "message_started_after": dict(how),
            "ms_after_end": {
                k: {"p50": pct(v, 50), "p95": pct(v, 95), "n": len(v)} for k, v in after_end.items()
            },
            "spoken_over_greeting": over,
        },
        "parameters": cfg.model_dump(exclude={"mode", "voicemail_message"}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set-dir", type=Path, help="where the set is made (default: TMPDIR)")
    parser.add_argument("--verbose", action="store_true", help="each item's outcome on stderr")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an agent.amd parameter other than its default, e.g. maximum_number_of_words=4",
    )
    args = parser.parse_args()
    params = dict(p.split("=", 1) for p in args.param)
    if args.set_dir is not None:
        os.environ["AMD_SET"] = str(args.set_dir)
    directory, items = amd_set.load()
    print(json.dumps(report(items, directory, args.verbose, params), indent=1))


if __name__ == "__main__":
    main()
