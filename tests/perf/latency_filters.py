"""The resampling path 8k -> 24k -> 8k offline, for bench_latency: quality and hold-back.

For each candidate (the bridge's resamplers, and soxr MQ as used before issue 19): PESQ
(ITU-T P.862 narrowband, PyPI ``pesq``) of espeak-ng speech through the round trip in 20 ms
chunks, the in-band magnitude (sines at 300-3,400 Hz, every 100 Hz, fitted at the output) of
the uplink and of the round trip, and the hold-back after each 20 ms chunk (mean and max).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.media.minphase import MinPhaseResampler
from gateway.media.resample import Resampler
from tests.audio import speech_wav

TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish."
)
BAND_HZ = np.arange(300, 3401, 100)


class Stream(Protocol):
    def process(self, pcm: np.ndarray) -> np.ndarray: ...
    def flush(self) -> np.ndarray: ...
    @property
    def delay_ms(self) -> float: ...


Factory = Callable[[int, int], Stream]


def through(r: Stream, x: np.ndarray, chunk: int) -> np.ndarray:
    out = [r.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return np.concatenate([*out, r.flush()])


def round_trip(make: Factory, x: np.ndarray) -> np.ndarray:
    return through(make(24000, 8000), through(make(8000, 24000), x, 160), 480)


def gain_db(make: Factory, both: bool) -> np.ndarray:
    """Output/input amplitude at each in-band frequency (a least-squares sine fit)."""
    gains = []
    for f in BAND_HZ:
        t = np.arange(8000) / 8000
        x = np.round(10000 * np.sin(2 * np.pi * f * t)).astype(np.int16)
        y = round_trip(make, x) if both else through(make(8000, 24000), x, 160)
        rate = 8000 if both else 24000
        tt = np.arange(len(y)) / rate
        core = slice(len(y) // 4, 3 * len(y) // 4)
        basis = np.stack([np.sin(2 * np.pi * f * tt[core]), np.cos(2 * np.pi * f * tt[core])], 1)
        coef, *_ = np.linalg.lstsq(basis, y[core].astype(np.float64), rcond=None)
        gains.append(20 * np.log10(np.hypot(*coef) / 10000))
    return np.asarray(gains)


def hold_back(make: Factory, in_rate: int, out_rate: int) -> dict[str, float]:
    r = make(in_rate, out_rate)
    x = np.round(3000 * np.random.default_rng(5).normal(size=2 * in_rate)).astype(np.int16)
    chunk = in_rate // 50
    holds = []
    for i in range(0, len(x), chunk):
        r.process(x[i : i + chunk])
        holds.append(r.delay_ms)
    steady = np.asarray(holds[10:])
    return {"mean": round(float(steady.mean()), 2), "max": round(float(steady.max()), 2)}


def cpu_us(make: Factory, in_rate: int, out_rate: int) -> float:
    """Microseconds per 20 ms chunk (median of 5 runs of 500 chunks)."""
    x = np.round(3000 * np.random.default_rng(6).normal(size=in_rate)).astype(np.int16)
    chunk = in_rate // 50
    parts = [x[i : i + chunk] for i in range(0, len(x), chunk)] * 10
    runs = []
    for _ in range(5):
        r = make(in_rate, out_rate)
        t0 = time.perf_counter()
        for p in parts:
            r.process(p)
        runs.append((time.perf_counter() - t0) / len(parts) * 1e6)
    return round(float(np.median(runs)), 2)


def candidate(make: Factory, speech: np.ndarray) -> dict[str, Any]:
    from pesq import pesq  # a benchmark-only dependency

    back = round_trip(make, speech)[: len(speech)]
    up, both = gain_db(make, False), gain_db(make, True)
    return {
        "pesq_nb": round(float(pesq(8000, speech, back, "nb")), 3),
        "uplink_gain_db_300_3400": [round(float(up.min()), 3), round(float(up.max()), 3)],
        "round_trip_gain_db_300_3400": [round(float(both.min()), 3), round(float(both.max()), 3)],
        "hold_back_ms_up": hold_back(make, 8000, 24000),
        "hold_back_ms_down": hold_back(make, 24000, 8000),
        "cpu_us_per_20ms_up": cpu_us(make, 8000, 24000),
        "cpu_us_per_20ms_down": cpu_us(make, 24000, 8000),
    }


def candidates() -> dict[str, Factory]:
    return {"soxr_mq": lambda i, o: Resampler(i, o, "MQ"), "minphase": MinPhaseResampler}


def filter_report() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="latency-filters-") as tmp:
        speech = speech_wav(Path(tmp) / "speech.wav", TEXT, 8000, 0.5, 0.5)
    return {name: candidate(make, speech) for name, make in candidates().items()}


if __name__ == "__main__":
    import json

    print(json.dumps(filter_report(), indent=2))
