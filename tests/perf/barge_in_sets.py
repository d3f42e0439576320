"""The noise set and the speech set for local barge-in, made here (espeak-ng, sox, numpy).

Nothing is downloaded and nothing large is committed: the sets are generated on first use
into a cache directory (``$TMPDIR/gateway-barge-in-sets-v<VERSION>``) and read back from there.
All audio is 8 kHz mono int16, the caller's side of a telephone call.

Noises (each ``NOISE_S`` long, so the whole set is 10 minutes), scaled to a given level:

* ``pink``, ``brown``: steady coloured noise; ``hum``: a fan/engine (50 Hz harmonics, a
  rumble, slow wobble);
* ``babble``: six espeak-ng voices talking at once, a crowded shop;
* ``tv``: one voice, a radio or TV in the room (speech, far below a caller's level);
* ``keyboard``: clicks at typing speed; ``bursts``: coughs and door bangs, 60-250 ms each;
* ``echo``: the agent's own voice coming back 6-20 dB down, 120 ms late (needs the
  agent's voice as the far end: :func:`agent_voice`);
* ``dtmf``: in-band key tones, 100 ms on, 100 ms off, in runs.

Levels are active levels: the RMS of the 10 ms windows within 20 dB of the loudest one (a
rough ITU-T P.56), so a burst "at -35 dBFS" is a -35 dBFS burst, not -35 dBFS spread over a
minute of silence.

Speech: short words ("yes", "no", "wait", "stop") and sentences, five espeak-ng voices,
at -15 to -35 dBFS. Each item carries its own onset (first sample above -50 dBFS).
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 8000
VERSION = 1
NOISE_S = 75.0
NOISES = ("pink", "brown", "hum", "babble", "tv", "keyboard", "bursts", "echo", "dtmf")
VOICES = ("en-us", "en-gb", "en-gb-scotland+f3", "en-029+m3", "en-us+f4")
WORDS = ("yes", "no", "wait", "stop")
SENTENCES = (
    "Hold on, that is not what I asked for.",
    "Sorry, can you say that again?",
    "I would like to speak to someone about my bill.",
)
SPEECH_LEVELS = (-15.0, -20.0, -25.0, -30.0, -35.0)
AGENT_TEXT = (
    "Thank you for calling. Your order has been shipped and should arrive on Thursday. "
    "Is there anything else I can help you with today? I can also check your account "
    "balance, change your delivery address, or tell you about our opening hours."
)


def cache_dir() -> Path:
    d = Path(os.environ.get("BARGE_IN_SETS", tempfile.gettempdir())) / (
        f"gateway-barge-in-sets-v{VERSION}"
    )
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 8 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype(np.int16).tobytes())


def window_db(x: np.ndarray) -> np.ndarray:
    """Level in dBFS of each 10 ms window."""
    n = len(x) // 80
    w = x[: n * 80].astype(np.float64).reshape(n, 80)
    return 10 * np.log10(np.maximum((w * w).mean(axis=1), 1e-3) / 32767.0**2)


def active_level(x: np.ndarray) -> float:
    db = window_db(x)
    ms = 10 ** (db / 10)
    return float(10 * np.log10(ms[db >= db.max() - 20].mean()))


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    y = x.astype(np.float64) * 10 ** ((dbfs - active_level(x)) / 20)
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def espeak(text: str, voice: str, speed: int = 165) -> np.ndarray:
    """espeak-ng's voice, resampled to 8 kHz by sox, cached."""
    key = zlib.crc32(f"{text}|{voice}|{speed}".encode())
    out = cache_dir() / f"tts-{voice}-{speed}-{key}.wav"
    if not out.exists():
        raw = out.with_suffix(".raw.wav")
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text],
            check=True,
            timeout=60,
        )
        subprocess.run(
            ["sox", str(raw), "-r", str(RATE), "-b", "16", "-c", "1", str(out)],
            check=True,
            timeout=60,
        )
        raw.unlink()
    return trim(read_wav(out))


def trim(x: np.ndarray) -> np.ndarray:
    loud = np.nonzero(np.abs(x) > 32767 * 10 ** (-50 / 20))[0]
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def _loop(x: np.ndarray, n: int) -> np.ndarray:
    return np.resize(x, n)


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    x = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    rumble = _coloured(n, rng, 2.0)
    x = x / np.std(x) + 0.5 * rumble / np.std(rumble)
    return x * (1 + 0.2 * np.sin(2 * np.pi * 0.3 * t))


def _babble(n: int, rng: np.random.Generator, talkers: int) -> np.ndarray:
    out = np.zeros(n)
    texts = (*SENTENCES, AGENT_TEXT)
    for k in range(talkers):
        voice = VOICES[k % len(VOICES)]
        parts = [espeak(texts[(k + j) % len(texts)], voice, 150 + 10 * k) for j in range(4)]
        speech = np.concatenate(parts).astype(np.float64)
        speech /= np.sqrt(np.mean(speech**2))
        out += np.roll(_loop(speech, n), int(rng.integers(0, n)))
    return out


def _events(n: int, rng: np.random.Generator, make, gap_s: tuple[float, float]) -> np.ndarray:
    out = np.zeros(n)
    at = int(rng.uniform(*gap_s) * RATE)
    while at < n:
        ev = make()
        end = min(n, at + len(ev))
        out[at:end] += ev[: end - at]
        at = end + int(rng.uniform(*gap_s) * RATE)
    return out


def _click(rng: np.random.Generator) -> np.ndarray:
    m = int(0.012 * RATE)
    return rng.standard_normal(m) * np.exp(-np.arange(m) / (0.002 * RATE))


def _burst(rng: np.random.Generator) -> np.ndarray:
    m = int(rng.uniform(0.06, 0.25) * RATE)
    if rng.random() < 0.5:  # a door bang: a thud and its ring
        t = np.arange(m) / RATE
        x = np.sin(2 * np.pi * rng.uniform(60, 140) * t) + 0.5 * rng.standard_normal(m)
        return x * np.exp(-t / 0.04)
    env = np.sin(np.pi * np.arange(m) / m) ** 0.5  # a cough: a noise burst, shaped
    return _coloured(m, rng, 1.0) / 0.01 * env


def _dtmf(rng: np.random.Generator) -> np.ndarray:
    low, high = (697, 770, 852, 941), (1209, 1336, 1477)
    keys = []
    t = np.arange(int(0.1 * RATE)) / RATE
    for _ in range(int(rng.integers(1, 6))):
        f1, f2 = rng.choice(low), rng.choice(high)
        keys.append(np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t))
        keys.append(np.zeros(int(0.1 * RATE)))
    return np.concatenate(keys)


@functools.cache
def agent_voice() -> np.ndarray:
    """The agent's answer at -18 dBFS, as the gateway would play it to the caller."""
    return at_level(espeak(AGENT_TEXT, "en-us+f3", 170), -18.0)


def _shape(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "pink":
        return _coloured(n, rng, 1.0)
    if kind == "brown":
        return _coloured(n, rng, 2.0)
    if kind == "hum":
        return _hum(n, rng)
    if kind == "babble":
        return _babble(n, rng, 6)
    if kind == "tv":
        return _babble(n, rng, 1)
    if kind == "keyboard":
        return _events(n, rng, lambda: _click(rng), (0.08, 0.35))
    if kind == "bursts":
        return _events(n, rng, lambda: _burst(rng), (1.0, 4.0))
    if kind == "dtmf":
        return _events(n, rng, lambda: _dtmf(rng), (2.0, 6.0))
    raise ValueError(f"unknown noise {kind!r}")


def noise(kind: str, dbfs: float, seconds: float = NOISE_S, seed: int = 0) -> np.ndarray:
    """`seconds` of one noise at an active level of `dbfs`, deterministic for a seed."""
    n = int(seconds * RATE)
    if kind == "echo":  # 5 s at each loss from 6 to 20 dB, in turn
        seg = 5 * RATE
        losses = [6.0 + 2.0 * ((k + seed) % 8) for k in range(-(-n // seg))]
        full = [echo(n, loss) for loss in sorted(set(losses))]
        by = dict(zip(sorted(set(losses)), full, strict=True))
        return np.concatenate([by[lo][k * seg : (k + 1) * seg] for k, lo in enumerate(losses)])
    out = cache_dir() / f"noise-{kind}-{dbfs:g}-{seconds:g}-{seed}.wav"
    if not out.exists():
        rng = np.random.default_rng(zlib.crc32(kind.encode()) + 1000 * seed)
        write_wav(out, at_level(_shape(kind, n, rng), dbfs))
    return read_wav(out)


def echo(n: int, loss_db: float, delay_ms: int = 120) -> np.ndarray:
    """The caller's side: the agent's voice (:func:`agent_far_end`) `loss_db` down, late."""
    far = agent_far_end(n).astype(np.float64)
    d = delay_ms * RATE // 1000
    y = np.concatenate((np.zeros(d), far[: n - d])) * 10 ** (-loss_db / 20)
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def agent_far_end(n: int) -> np.ndarray:
    """The agent's voice looped to `n` samples (what the gateway plays, the echo's source)."""
    v = agent_voice()
    return _loop(np.concatenate((v, np.zeros(RATE // 2, dtype=np.int16))), n)


@dataclass(frozen=True)
class SpeechItem:
    kind: str  # "word:no", "sentence"
    voice: str
    dbfs: float
    pcm: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.voice}/{self.dbfs:g}"


FIRST_TURN = "Hello, I am calling about the order I placed last week."


def first_turn(voice: str, dbfs: float) -> np.ndarray:
    """The caller's opening words (2-3 s), heard before the agent talks: what a detector that
    follows the caller's own level learns it from."""
    return at_level(espeak(FIRST_TURN, voice), dbfs)


def speech_set(levels: tuple[float, ...] = SPEECH_LEVELS) -> list[SpeechItem]:
    items = []
    for voice in VOICES:
        for word in WORDS:
            base = espeak(word, voice)
            items += [SpeechItem(f"word:{word}", voice, lv, at_level(base, lv)) for lv in levels]
        for k, text in enumerate(SENTENCES):
            base = espeak(text, voice)
            items += [SpeechItem(f"sentence{k}", voice, lv, at_level(base, lv)) for lv in levels]
    return items


if __name__ == "__main__":
    for kind in NOISES:
        x = noise(kind, -35.0)
        print(f"{kind:9s} {len(x) / RATE:5.1f} s  active {active_level(x):6.1f} dBFS")
    sp = speech_set()
    no = [len(i.pcm) / RATE * 1000 for i in sp if i.kind == "word:no"]
    print(f"speech items {len(sp)}; 'no' lasts {min(no):.0f}-{max(no):.0f} ms")
    print("cache:", cache_dir())
