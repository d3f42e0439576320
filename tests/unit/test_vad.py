"""EnergyVad on synthetic signals: event times are checked to one 10 ms window."""

from __future__ import annotations

import shutil
import subprocess
import wave

import numpy as np
import pytest

from gateway.media.vad import (
    WINDOW_MS,
    EnergyVad,
    SpeechStarted,
    SpeechStopped,
    dbfs_to_threshold,
    threshold_to_dbfs,
)

RATE = 24000


def noise(seconds: float, dbfs: float, *, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """White noise with the given RMS level (0 dBFS = RMS of 32767)."""
    x = np.random.default_rng(seed).standard_normal(round(seconds * rate))
    return x * 32767 * 10 ** (dbfs / 20)


def tone(seconds: float, dbfs: float, freq: float = 1000.0, *, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.sin(2 * np.pi * freq * t) * 32767 * 10 ** (dbfs / 20) * np.sqrt(2)


def speechlike(seconds: float, dbfs: float = -20.0, *, rate: int = RATE, seed: int = 1):
    """Noise band-limited to 200-3000 Hz, amplitude-modulated at a syllable rate (4 Hz)."""
    n = round(seconds * rate)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[(f < 200) | (f > 3000)] = 0
    x = np.fft.irfft(spec, n)
    t = np.arange(n) / rate
    x *= 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    return x / np.sqrt(np.mean(x**2)) * 32767 * 10 ** (dbfs / 20)


def pcm(*parts: np.ndarray) -> np.ndarray:
    return np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)


def feed(vad: EnergyVad, x: np.ndarray, chunk: int = 480) -> list:
    events = []
    for i in range(0, len(x), chunk):
        events += vad.process(x[i : i + chunk])
    return events


def near(actual: int, expected: int, tol: int = WINDOW_MS) -> bool:
    return abs(actual - expected) <= tol


def test_threshold_mapping():
    assert threshold_to_dbfs(0.0) == -70.0
    assert threshold_to_dbfs(0.5) == -50.0
    assert threshold_to_dbfs(1.0) == -30.0
    assert dbfs_to_threshold(-50.0) == 0.5
    assert dbfs_to_threshold(-100.0) == 0.0 and dbfs_to_threshold(0.0) == 1.0
    with pytest.raises(ValueError):
        threshold_to_dbfs(1.5)


def test_bad_arguments():
    with pytest.raises(ValueError):
        EnergyVad(22050)
    with pytest.raises(ValueError):
        EnergyVad(RATE, silence_duration_ms=-1)
    with pytest.raises(TypeError):
        EnergyVad(RATE).process(np.zeros(480, dtype=np.float32))


def test_noise_floor_at_minus_60_dbfs_is_not_speech():
    vad = EnergyVad(RATE)
    assert feed(vad, pcm(noise(5.0, -60.0))) == []
    assert not vad.in_speech
    assert vad.position_ms == 5000


def test_tone_burst_exact_times():
    x = pcm(noise(1.0, -65), tone(1.0, -20), noise(1.0, -65))
    events = feed(EnergyVad(RATE, prefix_padding_ms=300, silence_duration_ms=500), x)
    assert len(events) == 2
    start, stop = events
    assert isinstance(start, SpeechStarted) and near(start.audio_start_ms, 700)
    assert isinstance(stop, SpeechStopped) and near(stop.audio_end_ms, 2000)


def test_events_fire_on_the_audio_timeline():
    """Started fires after min_speech_ms of speech; stopped after silence_duration_ms."""
    vad = EnergyVad(RATE, silence_duration_ms=400)
    x = pcm(noise(0.5, -65), tone(0.5, -20), noise(1.0, -65))
    fired: list[tuple[int, object]] = []
    for i in range(0, len(x), 240):  # 10 ms at a time
        for ev in vad.process(x[i : i + 240]):
            fired.append((vad.position_ms, ev))
    (t_start, start), (t_stop, stop) = fired
    assert near(t_start, 600)  # onset 500 + 100 ms of speech
    assert near(start.audio_start_ms, 200)
    assert near(t_stop, 1400)  # end 1000 + 400 ms of silence
    assert near(stop.audio_end_ms, 1000)


@pytest.mark.parametrize("chunk", [1, 7, 160, 333, 480, 4800, 100_000])
def test_any_chunk_size_gives_the_same_events(chunk):
    x = pcm(noise(0.73, -65), speechlike(1.2), noise(0.8, -65), tone(0.4, -25), noise(0.9, -65))
    reference = feed(EnergyVad(RATE), x, chunk=len(x))
    assert [type(e) for e in reference] == [SpeechStarted, SpeechStopped] * 2
    assert feed(EnergyVad(RATE), x, chunk=chunk) == reference


def test_prefix_padding_is_clamped_at_zero():
    events = feed(EnergyVad(RATE, prefix_padding_ms=300), pcm(noise(0.1, -65), tone(0.5, -20)))
    assert events == [SpeechStarted(0)]


def test_clicks_and_short_bursts_are_not_speech():
    click = np.zeros(RATE // 200)  # 5 ms
    click[: RATE // 1000] = 20000
    x = pcm(noise(0.5, -65), click, noise(0.5, -65), tone(0.05, -10), noise(0.5, -65))
    for _ in range(5):  # clicks 300 ms apart, repeatedly
        x = np.concatenate((x, pcm(click, noise(0.3, -65))))
    assert feed(EnergyVad(RATE), x) == []


def test_speechlike_signal_one_turn():
    x = pcm(noise(0.5, -65), speechlike(1.5), noise(1.0, -65))
    events = feed(EnergyVad(RATE), x)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    assert near(events[0].audio_start_ms, 200)
    assert near(events[1].audio_end_ms, 2000)


def test_short_pause_keeps_the_turn_long_pause_splits_it():
    short = pcm(noise(0.3, -65), tone(0.5, -20), noise(0.3, -65), tone(0.5, -20), noise(1, -65))
    events = feed(EnergyVad(RATE, silence_duration_ms=500), short)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    assert near(events[1].audio_end_ms, 1600)

    long = pcm(noise(0.3, -65), tone(0.5, -20), noise(0.7, -65), tone(0.5, -20), noise(1, -65))
    events = feed(EnergyVad(RATE, silence_duration_ms=500), long)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped] * 2
    assert near(events[1].audio_end_ms, 800)
    assert near(events[2].audio_start_ms, 1500 - 300)
    assert near(events[3].audio_end_ms, 2000)


def test_threshold_sets_the_level_that_counts():
    x = pcm(noise(0.3, -65), tone(0.6, -40), noise(0.8, -65))
    assert len(feed(EnergyVad(RATE, threshold=0.5), x)) == 2  # -40 dBFS > -50
    assert feed(EnergyVad(RATE, threshold=0.9), x) == []  # -40 dBFS < -34
    y = pcm(noise(2.0, -60))
    assert len(feed(EnergyVad(RATE, threshold=0.1), y)) == 1  # -66 dBFS: the line is "speech"


def test_dc_offset_is_not_speech():
    assert feed(EnergyVad(RATE), pcm(noise(2.0, -65) + 3000)) == []


def test_speech_until_the_end_has_no_stop_and_reset_forgets_it():
    vad = EnergyVad(RATE)
    assert feed(vad, pcm(tone(0.5, -20))) == [SpeechStarted(0)]
    assert vad.in_speech
    vad.reset()
    assert not vad.in_speech
    assert feed(vad, pcm(noise(1.0, -65))) == []
    assert vad.position_ms == 1500


def test_8khz():
    x = pcm(noise(0.4, -65, rate=8000), tone(0.6, -20, rate=8000), noise(1, -65, rate=8000))
    events = feed(EnergyVad(8000), x, chunk=160)
    assert events == [SpeechStarted(100), SpeechStopped(1000)]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_telephone_speech_triggers_at_default_threshold(tmp_path):
    soxr = pytest.importorskip("soxr")
    wav = tmp_path / "hello.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(wav), "Hello, this is the echo test line."],
        check=True,
        timeout=30,
    )
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        speech = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    phone = soxr.resample(soxr.resample(speech, rate, 8000), 8000, RATE)
    x = pcm(noise(0.5, -60), phone, noise(1.0, -60))  # on a -60 dBFS noisy line
    events = feed(EnergyVad(RATE, threshold=0.5), x)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    loud = np.flatnonzero(np.abs(phone.astype(np.int32)) > 300)  # -40 dBFS peaks: audible
    onset_ms = 500 + loud[0] * 1000 // RATE
    end_ms = 500 + loud[-1] * 1000 // RATE
    assert abs(events[0].audio_start_ms - (onset_ms - 300)) <= 30
    assert abs(events[1].audio_end_ms - end_ms) <= 30
