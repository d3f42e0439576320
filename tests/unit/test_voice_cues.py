"""The two cues of local barge-in's voice detector: key tones, and voiced frames.

Golden speech (tests/unit/data/vad_*.wav, espeak-ng, 8 kHz); tones and noise made here, seeded.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.bridge.voice_cues import DTMF_HZ, FRAME, key_tone, voiced
from gateway.media.g711 import codec_by_name

from .test_voice_onset import bangs, level, pink, wav

RATE = 8000
ULAW = codec_by_name("PCMU")


def frames(x: np.ndarray) -> list[np.ndarray]:
    n = len(x) // FRAME
    return [x[k * FRAME : (k + 1) * FRAME].astype(np.float64) for k in range(n)]


def tone_pair(low: float, high: float, dbfs: float, seconds: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.sin(2 * np.pi * low * t + 0.3) + np.sin(2 * np.pi * high * t + 1.1)
    return level(x, dbfs)


def loud_frames(x: np.ndarray, below_top_db: float = 20.0) -> list[np.ndarray]:
    """The frames a gate would let through: within `below_top_db` of the loudest."""
    fs = frames(x)
    energy = np.array([f @ f for f in fs])
    least = energy.max() / 10 ** (below_top_db / 10)
    return [f for f, e in zip(fs, energy, strict=True) if e >= least]


@pytest.mark.parametrize("low", DTMF_HZ[:4])
@pytest.mark.parametrize("high", DTMF_HZ[4:])
def test_every_key_is_a_key_tone_at_any_level(low: float, high: float) -> None:
    for dbfs in (-10.0, -25.0, -40.0):
        for f in frames(tone_pair(low, high, dbfs)):
            assert key_tone(f, float(f @ f)), (low, high, dbfs)


def test_a_key_tone_is_voiced_but_never_counts() -> None:
    """Why the key tone check exists: a tone pair is as harmonic as a voice gets."""
    f = frames(tone_pair(852.0, 1477.0, -25.0))[0]
    assert voiced(f)


@pytest.mark.parametrize("name", ["vad_no.wav", "vad_wait.wav", "vad_babble.wav"])
def test_speech_is_no_key_tone(name: str) -> None:
    for f in loud_frames(level(wav(name).astype(np.float64), -20.0)):
        assert not key_tone(f, float(f @ f))


def test_one_tone_alone_is_no_key() -> None:
    t = np.arange(FRAME) / RATE
    f = level(np.sin(2 * np.pi * 941.0 * t), -20.0).astype(np.float64)
    assert not key_tone(f, float(f @ f))


def test_silence_is_neither() -> None:
    f = np.zeros(FRAME)
    assert not key_tone(f, 0.0)
    assert not voiced(f)


@pytest.mark.parametrize("name", ["vad_no.wav", "vad_wait.wav"])
def test_a_word_has_voiced_frames_from_its_start(name: str) -> None:
    """The onset needs one: a word's first loud frames hold it (its vowel)."""
    fs = loud_frames(level(wav(name).astype(np.float64), -25.0))
    assert any(voiced(f) for f in fs[:3])
    assert np.mean([voiced(f) for f in fs]) >= 0.8


@pytest.mark.parametrize(
    ("name", "noise"),
    [
        ("pink", lambda: pink(2.0, -25.0)),
        ("door bangs", lambda: bangs(5.0, -25.0)),
        ("white", lambda: level(np.random.default_rng(7).standard_normal(2 * RATE), -25.0)),
    ],
)
def test_broadband_noise_is_not_voiced(name: str, noise) -> None:
    fs = loud_frames(noise())
    assert fs, name
    assert not any(voiced(f) for f in fs), name
