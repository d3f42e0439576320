"""The labelled set for answering-machine detection, made here (espeak-ng, soxr, numpy).

Nothing is downloaded and nothing is committed: the set is generated at run time into a
temporary directory (``$AMD_SET`` or ``$TMPDIR``, ``gateway-amd-set-v<VERSION>``, reused
while its version stands) and read back from there. Every item is 8 kHz mono int16 at
telephone quality: espeak-ng's speech resampled to 8 kHz, set to a speaking level, a faint
line noise added, and passed through G.711 (mu-law encode and decode), what the gateway
hears from a phone line.

* machine: voicemail greetings of several lengths (from "Hi, it's Mark, leave a message"
  to a dental office's opening hours), five voices, two speeds, with leading silence or
  not, and with a beep (one tone, 400-1500 Hz, 0.2-1.0 s, after a short gap) or without
  (machines that record in silence); then the recording's silence.
* human: short answers ("Hello?", "Yes, speaking", "Hello, this is Anna", ...), the same
  voices and speeds, with or without a pause before them; then the silence of a person
  waiting to be spoken to.

Each item carries its label and its times: the speech's start and end, the beep's end.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
import wave
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr

from gateway.media.g711 import PCMU

RATE = 8000
VERSION = 1
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland+m3", "en-029+f4")
SPEEDS = (145, 180)
GREETINGS = (
    "Hi, it's Mark, leave a message.",
    "You have reached five five five, zero one three four. Please leave a message.",
    "The person you are calling is not available. Please leave a message after the tone.",
    "Hi, you've reached the voicemail of John Smith. I can't take your call right now, "
    "please leave a message after the tone.",
    "Hello, this is Anna. I'm away from the phone. Leave your name and number and I'll call "
    "you back as soon as I can.",
    "Thank you for calling Acme Dental. Our office is currently closed. Our hours are Monday "
    "to Friday, eight to five. Please leave a message after the tone and we will return your "
    "call.",
)
ANSWERS = (
    "Hello?",
    "Yes, speaking.",
    "Hello, this is Anna.",
    "Hi!",
    "Hello, who's calling?",
    "Yeah?",
    "Good morning, Peter speaking.",
)
BEEPS_HZ = (440.0, 850.0, 1000.0, 1400.0)
TAIL_S = 6.0  # the recording's silence, or the person waiting


@dataclass(frozen=True)
class Item:
    name: str
    label: str  # human | machine
    text: str
    voice: str
    speed: int
    lead_s: float  # silence before the speech
    speech_end_s: float
    beep_hz: float | None = None
    beep_end_s: float | None = None


def espeak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """espeak-ng's speech at 8 kHz, int16, trimmed of its own leading and trailing silence."""
    raw = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with wave.open(io.BytesIO(raw)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    out = soxr.resample(pcm.astype(np.float32), rate, RATE)
    loud = np.flatnonzero(np.abs(out) > 100)
    return out[loud[0] : loud[-1] + 1] if len(loud) else out


def tone(hz: float, seconds: float, dbfs: float = -15.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)  # 5 ms edges, no click
    return (10 ** (dbfs / 20) * 32767 * ramp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.float32)


def telephone(x: np.ndarray, seed: int) -> np.ndarray:
    """A line: a faint noise (-62 dBFS) added, then G.711 mu-law there and back."""
    noise = np.random.default_rng(seed).normal(0, 10 ** (-62 / 20) * 32767, len(x))
    y = np.clip(x.astype(np.float64) + noise, -32768, 32767).astype(np.int16)
    return PCMU.decode(PCMU.encode(y))


def at_level(speech: np.ndarray, dbfs: float) -> np.ndarray:
    """Speech scaled so the RMS of its loud part is ``dbfs``."""
    x = speech.astype(np.float64)
    active = x[np.abs(x) > 0.02 * np.abs(x).max()]
    return (x * 10 ** (dbfs / 20) * 32767 / float(np.sqrt(np.mean(active**2)))).astype(np.float32)


def _pick(name: str, options: tuple) -> object:
    return options[zlib.crc32(name.encode()) % len(options)]


def build(directory: Path) -> list[Item]:
    """Make every item into ``directory`` (WAV files and labels.json)."""
    items: list[Item] = []
    for t, text in enumerate(GREETINGS):
        for voice in VOICES:
            for speed in SPEEDS:
                items.append(
                    _machine(directory, f"machine-{t}-{voice}-{speed}", text, voice, speed)
                )
    for a, text in enumerate(ANSWERS):
        for voice in VOICES:
            for speed in SPEEDS:
                items.append(_human(directory, f"human-{a}-{voice}-{speed}", text, voice, speed))
    (directory / "labels.json").write_text(json.dumps([asdict(i) for i in items], indent=1))
    return items


def _machine(directory: Path, name: str, text: str, voice: str, speed: int) -> Item:
    seed = zlib.crc32(name.encode())
    lead = float(_pick(name + "lead", (0.0, 0.0, 0.4, 1.0)))
    beeps = bool(_pick(name + "beep", (True, True, True, False)))
    level = float(_pick(name + "level", (-16.0, -20.0, -24.0)))
    speech = at_level(espeak(text, voice, speed), level)
    parts = [silence(lead), speech]
    end = lead + len(speech) / RATE
    beep_hz = beep_end = None
    if beeps:
        gap = float(_pick(name + "gap", (0.3, 0.5, 0.8)))
        beep_hz = float(_pick(name + "hz", BEEPS_HZ))
        beep_s = float(_pick(name + "len", (0.2, 0.4, 0.6, 1.0)))
        # The beep as loud as the speech (RMS), as a machine plays it.
        parts += [silence(gap), tone(beep_hz, beep_s, dbfs=level + 3)]
        beep_end = end + gap + beep_s
    parts.append(silence(TAIL_S))
    _write(directory / f"{name}.wav", telephone(np.concatenate(parts), seed))
    return Item(name, "machine", text, voice, speed, lead, round(end, 3), beep_hz, beep_end)


def _human(directory: Path, name: str, text: str, voice: str, speed: int) -> Item:
    seed = zlib.crc32(name.encode())
    lead = float(_pick(name + "lead", (0.0, 0.3, 0.8)))
    level = float(_pick(name + "level", (-16.0, -20.0, -24.0)))
    speech = at_level(espeak(text, voice, speed), level)
    audio = telephone(np.concatenate([silence(lead), speech, silence(TAIL_S)]), seed)
    _write(directory / f"{name}.wav", audio)
    end = lead + len(speech) / RATE
    return Item(name, "human", text, voice, speed, lead, round(end, 3))


def _write(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype(np.int16).tobytes())


def read(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def load() -> tuple[Path, list[Item]]:
    """The set's directory and items, made on first use."""
    base = Path(os.environ.get("AMD_SET", tempfile.gettempdir()))
    directory = base / f"gateway-amd-set-v{VERSION}"
    labels = directory / "labels.json"
    if labels.exists():
        return directory, [Item(**d) for d in json.loads(labels.read_text())]
    directory.mkdir(parents=True, exist_ok=True)
    return directory, build(directory)
