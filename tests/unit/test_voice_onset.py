"""Local barge-in's voice detector: a caller's word stops the agent, noise does not.

Golden audio (tests/unit/data/vad_*.wav, 8 kHz, made by tests/perf/barge_in_sets.py with
espeak-ng): the words "no" (380 ms) and "wait", 3 s of six-voice babble, 2 s of pink noise.
Synthetic noise is made here, seeded.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.bridge.local_vad import LocalBargeIn
from gateway.bridge.voice_onset import FRAME, VoiceOnset
from gateway.config import AgentConfig
from gateway.media.g711 import codec_by_name

DATA = Path(__file__).parent / "data"
RATE = 8000
ULAW = codec_by_name("PCMU")
GATE_DBFS = -30.0  # the voice detector's default (threshold 1.0)


def wav(name: str) -> np.ndarray:
    with wave.open(str(DATA / name), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale to an active level of `dbfs` (RMS of the 10 ms windows within 20 dB of the top),
    then through G.711 as a call would carry it."""
    n = len(x) // 80
    ms = (x[: n * 80].astype(np.float64).reshape(n, 80) ** 2).mean(axis=1)
    active = ms[ms >= ms.max() / 100].mean()
    y = x * (32767 * 10 ** (dbfs / 20) / np.sqrt(active))
    return ULAW.decode(ULAW.encode(np.clip(np.rint(y), -32768, 32767).astype(np.int16)))


def pink(seconds: float, dbfs: float, seed: int = 1) -> np.ndarray:
    n = int(seconds * RATE)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    return level(np.fft.irfft(spec / np.sqrt(f), n), dbfs)


def brown(seconds: float, dbfs: float, seed: int = 3) -> np.ndarray:
    n = int(seconds * RATE)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    return level(np.fft.irfft(spec / f, n), dbfs)


def dtmf(seconds: float, dbfs: float) -> np.ndarray:
    t = np.arange(int(0.1 * RATE)) / RATE
    key = np.concatenate((np.sin(2 * np.pi * 770 * t) + np.sin(2 * np.pi * 1336 * t), 0 * t))
    return level(np.resize(key, int(seconds * RATE)), dbfs)


def bangs(seconds: float, dbfs: float, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * RATE))
    t = np.arange(int(0.2 * RATE)) / RATE
    for at in range(4000, len(x) - len(t), 8000):
        x[at : at + len(t)] = (np.sin(2 * np.pi * 90 * t) + rng.standard_normal(len(t))) * np.exp(
            -t / 0.04
        )
    return level(x, dbfs)


def onsets_ms(x: np.ndarray, min_speech_ms: int = 60) -> list[int]:
    """Feed `x` in 20 ms packets after 300 ms of line hiss; ms from the start of `x`."""
    det = VoiceOnset(GATE_DBFS, min_speech_ms)
    lead = pink(0.3, -65.0)
    y = np.concatenate((lead, x))
    out = []
    for k in range(len(y) // FRAME):
        if det.process(y[k * FRAME : (k + 1) * FRAME]):
            out.append((k + 1) * 20 - 300)
    return out


@pytest.mark.parametrize(
    ("word", "dbfs"),
    [
        ("vad_no.wav", -15.0),
        ("vad_no.wav", -30.0),
        ("vad_wait.wav", -20.0),
        ("vad_wait.wav", -30.0),
    ],
)
def test_a_short_word_at_minus_30_dbfs_and_louder_is_one_onset_within_its_first_200_ms(
    word: str, dbfs: float
) -> None:
    [at] = onsets_ms(level(wav(word).astype(np.float64), dbfs))
    assert 40 <= at <= 200


@pytest.mark.parametrize(
    ("name", "noise"),
    [
        ("pink -35", lambda: pink(5.0, -35.0)),
        ("brown -35", lambda: brown(5.0, -35.0)),  # frames past the gate: the model adapted
        ("dtmf -35", lambda: dtmf(5.0, -35.0)),
        ("door bangs -35", lambda: bangs(5.0, -35.0)),
        # its frames that pass the gate come after quieter ones: fed only the former, the
        # detector took the noise for a voice 960 ms in (its noise model had never heard it)
        ("pink -35, golden", lambda: level(wav("vad_pink.wav").astype(np.float64), -35.0)),
        ("babble -35", lambda: level(wav("vad_babble.wav").astype(np.float64), -35.0)),
        ("the word 'no' at -40", lambda: level(wav("vad_no.wav").astype(np.float64), -40.0)),
    ],
)
def test_noise_and_quiet_voices_do_not_pause_the_agent(name: str, noise) -> None:
    assert onsets_ms(noise()) == [], name


@pytest.mark.parametrize(
    ("name", "noise"),
    [
        ("pink -25", lambda: pink(5.0, -25.0)),
        ("pink -15", lambda: pink(5.0, -15.0)),
        ("brown -25", lambda: brown(5.0, -25.0)),
        ("dtmf -25", lambda: dtmf(5.0, -25.0)),
        ("dtmf -15", lambda: dtmf(5.0, -15.0)),
        ("door bangs -25", lambda: bangs(5.0, -25.0)),
        ("door bangs -15", lambda: bangs(5.0, -15.0)),
    ],
)
def test_loud_noise_past_the_gate_does_not_pause_it(name: str, noise) -> None:
    """Past the gate WebRTC's detector takes loud steady noise, key tones and bangs for a
    voice; the cues (a voiced frame needed, key tones never count) do not."""
    assert onsets_ms(noise()) == [], name


def test_other_voices_past_the_gate_do_pause_it() -> None:
    """The limit, pinned so that a change to it is seen: a crowd as loud as the gate is
    speech, and only its level could tell it from the caller (docs/barge-in.md)."""
    assert onsets_ms(level(wav("vad_babble.wav").astype(np.float64), -25.0))


def test_the_energy_detector_it_replaces_is_paused_by_steady_noise() -> None:
    """Why the voice detector exists (and that the table above could fail)."""
    local = LocalBargeIn(0.6, 60, 600, "energy")
    assert local.onset(pink(1.0, -35.0))


def test_chunking_does_not_change_the_result() -> None:
    x = np.concatenate((pink(1.0, -35.0), level(wav("vad_no.wav").astype(np.float64), -25.0)))
    whole = VoiceOnset(GATE_DBFS, 60)
    cut = VoiceOnset(GATE_DBFS, 60)
    assert whole.process(x)
    assert any(cut.process(x[i : i + 77]) for i in range(0, len(x), 77))


def test_it_runs_only_while_the_agent_talks_and_starts_afresh_after() -> None:
    word = level(wav("vad_no.wav").astype(np.float64), -20.0)
    local = LocalBargeIn(1.0, 60, 600, "voice")
    assert not local.onset(word, talking=False)  # the agent is silent: nothing to pause
    assert local._voice is not None and local._voice.frames == 0  # nor any CPU spent
    assert local.onset(word, talking=True)
    assert not local.onset(word, talking=True)  # the same run of speech: one onset
    local.onset(word[:160], talking=False)
    assert local.onset(word, talking=True)  # a new answer: a new onset


def test_the_gate_keeps_the_detector_from_running_on_a_quiet_line() -> None:
    det = VoiceOnset(GATE_DBFS, 60)
    det.process(pink(2.0, -50.0))
    assert det.frames == 100 and det.detector_frames == 0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="gate_dbfs"):
        VoiceOnset(5.0, 60)
    with pytest.raises(ValueError, match="min_speech_ms"):
        VoiceOnset(-30.0, 0)
    with pytest.raises(TypeError, match="int16"):
        VoiceOnset(-30.0, 60).process(np.zeros(160))
    with pytest.raises(ValueError, match="detector"):
        LocalBargeIn(0.5, 60, 600, "psychic")  # type: ignore[arg-type]


def test_config_defaults_follow_the_detector() -> None:
    voice = AgentConfig.model_validate({"local_barge_in": {}}).local_barge_in
    energy = AgentConfig.model_validate({"local_barge_in": {"detector": "energy"}}).local_barge_in
    set_ = AgentConfig.model_validate({"local_barge_in": {"threshold": 0.9}}).local_barge_in
    assert voice is not None and energy is not None and set_ is not None
    assert (voice.detector, voice.level) == ("voice", 1.0)
    assert (energy.detector, energy.level) == ("energy", 0.6)
    assert set_.level == 0.9


def test_on_by_default_and_only_where_the_caller_can_cut_the_answer() -> None:
    """Local barge-in pre-empts the service's barge-in: with none (interrupt_response false,
    or manual turns) a pause could only ever be unconfirmed silence, so it does not run."""
    from gateway.bridge.uplink import CallerAudio

    default = AgentConfig()
    assert default.local_barge_in is not None and default.local_barge_in.detector == "voice"
    assert CallerAudio(ULAW, False, default, 20, None, lambda: None).local is not None
    for turns in ({"interrupt_response": False}, {"type": "none"}):
        agent = AgentConfig.model_validate({"turn_detection": turns})
        assert agent.local_barge_in is not None and not agent.barge_in
        assert CallerAudio(ULAW, False, agent, 20, None, lambda: None).local is None
    off = AgentConfig.model_validate({"local_barge_in": None})
    assert CallerAudio(ULAW, False, off, 20, None, lambda: None).local is None
