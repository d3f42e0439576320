"""Offline comparison of speech detectors for local barge-in, on the same audio.

Every candidate sees the noise set and the speech set of :mod:`barge_in_sets` (8 kHz, after a
G.711 mu-law round trip, as the gateway would) in 20 ms packets, and decides per frame
"speech / not speech"; one shared onset rule turns that into barge-ins: ``min_speech_ms`` of
speech frames, gaps of at most one frame, and a new onset only after 300 ms without speech.
An optional energy gate (``--gate-dbfs``) lets a frame count only when it is also that loud.

Reported per candidate: false onsets per 10 minutes of each noise (at ``--noise-dbfs``),
missed onsets per speech kind and level, onset latency (p50/p99, from the first sample of the
word), and CPU seconds per second of audio.

Candidates that are not runtime dependencies are installed only for this script:

    .venv/bin/python -m pip install -e '.[vad-compare]'     # onnxruntime, ten-vad, pyrnnoise
    .venv/bin/python -m pip install --no-deps silero-vad     # its model files, without torch
    apt-get install libc++1                                   # TEN VAD's library needs it
    .venv/bin/python tests/perf/compare_vad.py [--only silero,webrtcvad-3] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import barge_in_sets as sets

from gateway.bridge.echo import EchoSuppressor
from gateway.bridge.voice_cues import key_tone, voiced
from gateway.media.g711 import codec_by_name
from gateway.media.resample import Resampler

RATE = 8000
PACKET = 160
ULAW = codec_by_name("PCMU")


class Candidate:
    """Per 20 ms packet: one speech flag per ``frame_ms`` of it (frames may straddle packets)."""

    frame_ms = 10

    def __init__(self) -> None:
        self._pending = np.empty(0, dtype=np.int16)

    def packet(self, pcm: np.ndarray) -> list[bool]:
        x = np.concatenate((self._pending, pcm))
        n = RATE * self.frame_ms // 1000
        k = len(x) // n
        self._pending = x[k * n :]
        return [self.frame(x[i * n : (i + 1) * n]) for i in range(k)]

    def frame(self, pcm: np.ndarray) -> bool:
        raise NotImplementedError


class Energy(Candidate):
    def __init__(self, dbfs: float = -46.0) -> None:
        super().__init__()
        self.ms = 32767.0**2 * 10 ** (dbfs / 10)

    def frame(self, pcm: np.ndarray) -> bool:
        x = pcm.astype(np.float64)
        x -= x.mean()
        return float((x * x).mean()) >= self.ms


class WebRtc(Candidate):
    frame_ms = 20

    def __init__(self, mode: int) -> None:
        super().__init__()
        import webrtcvad

        self.vad = webrtcvad.Vad(mode)

    def frame(self, pcm: np.ndarray) -> bool:
        return bool(self.vad.is_speech(pcm.tobytes(), RATE))


class Silero(Candidate):
    frame_ms = 32  # 256 samples at 8 kHz, the model's window

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        import onnxruntime as ort

        here = importlib.util.find_spec("silero_vad").submodule_search_locations[0]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(f"{here}/data/silero_vad.onnx", opts)
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros(32, dtype=np.float32)
        self.sr = np.array(RATE, dtype=np.int64)
        self.threshold = threshold

    def frame(self, pcm: np.ndarray) -> bool:
        x = pcm.astype(np.float32) / 32768.0
        inp = np.concatenate((self.context, x))[None, :]
        self.context = x[-32:]
        out, self.state = self.sess.run(None, {"input": inp, "state": self.state, "sr": self.sr})
        return float(out[0, 0]) >= self.threshold


class Ten(Candidate):
    frame_ms = 16  # hop 256 at 16 kHz

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        from ten_vad import TenVad

        self.vad = TenVad(256, threshold)
        self.up = Resampler(RATE, 16000)
        self.buf = np.empty(0, dtype=np.int16)

    def frame(self, pcm: np.ndarray) -> bool:
        self.buf = np.concatenate((self.buf, self.up.process(pcm)))
        if len(self.buf) < 256:
            return False
        hop, self.buf = self.buf[:256], self.buf[256:]
        _, flag = self.vad.process(np.ascontiguousarray(hop))
        return bool(flag)


class RnNoise(Candidate):
    frame_ms = 10

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        from pyrnnoise import rnnoise

        self.rn = rnnoise
        self.state = rnnoise.create()
        self.up = Resampler(RATE, 48000)
        self.buf = np.empty(0, dtype=np.int16)
        self.threshold = threshold

    def frame(self, pcm: np.ndarray) -> bool:
        self.buf = np.concatenate((self.buf, self.up.process(pcm)))
        if len(self.buf) < 480:
            return False
        f, self.buf = self.buf[:480], self.buf[480:]
        _, prob = self.rn.process_mono_frame(self.state, f)
        return float(np.asarray(prob).reshape(-1)[0]) >= self.threshold


KINDS: dict[str, Callable[[float], Candidate]] = {
    "energy": Energy,  # the suffix is the threshold in dBFS: energy--46
    "webrtcvad": lambda mode: WebRtc(int(mode)),  # the suffix is the mode, 0-3
    "silero": Silero,  # the suffix is the probability threshold
    "ten": Ten,
    "rnnoise": RnNoise,
}
DEFAULT = "energy--46,webrtcvad-2,webrtcvad-3,silero-0.5,ten-0.5,rnnoise-0.5"


def make(name: str) -> Candidate:
    kind, _, value = name.partition("-")
    return KINDS[kind](float(value))


class Onsets:
    """The shared rule: ``min_ms`` of speech frames, gaps <= one frame, re-arm after 300 ms."""

    def __init__(
        self, min_ms: int, gate_ms: float | None, above_bg_db: float | None = None
    ) -> None:
        self.min_ms, self.gate = min_ms, gate_ms
        self.above_bg = above_bg_db
        self.bg_db = -65.0  # the background's mean level, dB, over about a second
        self.p95_margin: float | None = None  # gate >= the 95th percentile of 2 s + this
        self.ring: list[float] = []
        self.t = 0.0
        self.run = 0.0
        self.gap = 0.0
        self.armed = True
        self.quiet = 0.0
        self.cues = False  # --cues: key tones never count, an onset needs a voiced frame
        self.run_voiced = False

    def feed(self, flags: list[bool], frame_ms: float, packet: np.ndarray) -> bool:
        loud = True
        if self.gate is not None:
            x = packet.astype(np.float64)
            ms = float((x * x).mean())
            gate = self.gate
            if self.p95_margin is not None:
                db = 10 * np.log10(ms / 32767.0**2 + 1e-10)
                if len(self.ring) < 25:
                    floor = -30.0  # the background not known yet: the threshold
                else:
                    floor = float(np.percentile(self.ring, 95)) + self.p95_margin
                gate = max(gate, 32767.0**2 * 10 ** (floor / 10))
                self.ring = [*self.ring, db][-100:]
            if self.above_bg is not None:
                db = 10 * np.log10(ms / 32767.0**2 + 1e-10)
                gate = max(gate, 32767.0**2 * 10 ** ((self.bg_db + self.above_bg) / 10))
                self.bg_db += (db - self.bg_db) / 50
            loud = ms >= gate
        is_voiced = True
        if self.cues and loud and any(flags):
            x = packet.astype(np.float64)
            loud = not key_tone(x, float(x @ x))
            is_voiced = voiced(x)
        fired = False
        for f in flags:
            f = f and loud
            self.t += frame_ms
            if f:
                self.quiet = 0.0
                self.gap = 0.0
                self.run += frame_ms
                self.run_voiced |= is_voiced
                if self.armed and self.run >= self.min_ms and self.run_voiced:
                    self.armed, fired = False, True
            else:
                self.quiet += frame_ms
                self.gap += frame_ms
                if self.gap > frame_ms:
                    self.run = 0.0
                    self.run_voiced = False
                if self.quiet >= 300:
                    self.armed = True
        return fired


def packets(x: np.ndarray) -> list[np.ndarray]:
    y = ULAW.decode(ULAW.encode(x))
    n = len(y) // PACKET
    return [y[i * PACKET : (i + 1) * PACKET] for i in range(n)]


def gate_ms(args: argparse.Namespace, caller_dbfs: float) -> float | None:
    """The gate as a mean square: fixed (``--gate-dbfs``), or ``--below-caller-db`` under the
    caller's own level (the level of their earlier turns; the noise runs take
    ``--caller-dbfs``), never above ``--gate-max-dbfs`` nor below ``--gate-min-dbfs``."""
    if args.below_caller_db is not None:
        db = min(max(caller_dbfs - args.below_caller_db, args.gate_min_dbfs), args.gate_max_dbfs)
        return 32767.0**2 * 10 ** (db / 10)
    return args.gate


def run_noise(name: str, kind: str, x: np.ndarray, args: argparse.Namespace) -> tuple[int, float]:
    cand = make(name)
    onsets = Onsets(args.min_speech_ms, gate_ms(args, args.caller_dbfs), args.above_background_db)
    onsets.p95_margin, onsets.cues = args.above_p95_db, args.cues
    fired = 0
    echo = None
    if kind == "echo":
        echo = EchoSuppressor(6.0, 300)  # as agent.echo_suppression: {} would run it
        far = packets(sets.agent_far_end(len(x)))
    t0 = time.process_time()
    for k, p in enumerate(packets(x)):
        if echo is not None:
            echo.far_end(far[k])
            if not echo.near_end(p):
                p = np.zeros_like(p)
        fired += onsets.feed(cand.packet(p), cand.frame_ms, p)
    return fired, time.process_time() - t0


def run_speech(name: str, item: sets.SpeechItem, args: argparse.Namespace) -> float | None:
    """Latency in ms from the word's first sample to the onset, None when missed."""
    lead = sets.at_level(sets.noise("pink", -65.0, 1.0), -65.0)  # the line's own hiss
    x = np.concatenate((lead, item.pcm, np.zeros(RATE // 2, dtype=np.int16)))
    cand = make(name)
    onsets = Onsets(args.min_speech_ms, gate_ms(args, item.dbfs), args.above_background_db)
    onsets.p95_margin, onsets.cues = args.above_p95_db, args.cues
    for k, p in enumerate(packets(x)):
        if onsets.feed(cand.packet(p), cand.frame_ms, p):
            ms = (k + 1) * 20 - len(lead) / 8
            return ms if ms > 0 else None  # before the word: a false onset, not a hit
    return None


def evaluate(name: str, args: argparse.Namespace, speech: list[sets.SpeechItem]) -> dict:
    noise_fp, cpu, audio_s = {}, 0.0, 0.0
    for kind in sets.NOISES:
        x = sets.noise(kind, args.noise_dbfs)
        fired, c = run_noise(name, kind, x, args)
        noise_fp[kind] = round(fired * 600 / (len(x) / RATE), 1)
        cpu += c
        audio_s += len(x) / RATE
    missed: dict[str, int] = {}
    lat: list[float] = []
    by_level: dict[str, list[float]] = {}
    for item in speech:
        ms = run_speech(name, item, args)
        key = f"{item.kind.split(':')[0]}@{item.dbfs:g}"
        missed.setdefault(key, 0)
        if ms is None:
            missed[key] += 1
        else:
            by_level.setdefault(f"{item.dbfs:g}", []).append(ms)
            if item.dbfs >= -30:
                lat.append(ms)
    lat_a = np.asarray(lat or [np.nan])
    return {
        "false_per_10min": noise_fp,
        "false_per_10min_all": round(sum(noise_fp.values()) / len(noise_fp), 2),
        "missed": missed,
        "onset_ms_p50": round(float(np.percentile(lat_a, 50)), 1),
        "onset_ms_p99": round(float(np.percentile(lat_a, 99)), 1),
        "onset_ms_p50_by_level": {k: round(float(np.median(v)), 1) for k, v in by_level.items()},
        "cpu_pct_of_core_per_call": round(100 * cpu / audio_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=DEFAULT)
    parser.add_argument("--noise-dbfs", type=float, default=-35.0)
    parser.add_argument("--min-speech-ms", type=int, default=60)
    parser.add_argument("--gate-dbfs", type=float, default=None)
    parser.add_argument("--below-caller-db", type=float, default=None)
    parser.add_argument("--above-background-db", type=float, default=None)
    parser.add_argument("--above-p95-db", type=float, default=None)
    parser.add_argument("--caller-dbfs", type=float, default=-20.0)
    parser.add_argument("--gate-min-dbfs", type=float, default=-45.0)
    parser.add_argument("--gate-max-dbfs", type=float, default=0.0)
    parser.add_argument("--cues", action="store_true", help="gateway/bridge/voice_cues.py")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.gate = None if args.gate_dbfs is None else 32767.0**2 * 10 ** (args.gate_dbfs / 10)
    speech = sets.speech_set()
    out: dict[str, Any] = {"noise_dbfs": args.noise_dbfs, "min_speech_ms": args.min_speech_ms}
    out["gate_dbfs"] = args.gate_dbfs
    out["below_caller_db"], out["caller_dbfs"] = args.below_caller_db, args.caller_dbfs
    out["above_p95_db"], out["cues"] = args.above_p95_db, args.cues
    for name in args.only.split(","):
        out[name] = evaluate(name, args, speech)
        print(name, json.dumps(out[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
