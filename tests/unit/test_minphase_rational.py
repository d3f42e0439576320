"""RationalMinPhaseResampler (G.722's 16k <-> 24k): no hold-back, a flat band to 7 kHz, images
and aliases far down, chunking-proof, and the speech quality of soxr MQ (wideband PESQ)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gateway.media.conversion import converter
from gateway.media.minphase_rational import RationalMinPhaseResampler
from gateway.media.resample import Resampler
from tests.audio import speech_wav

UP, DOWN = (16000, 24000), (24000, 16000)


def stream(r: RationalMinPhaseResampler | Resampler, x: np.ndarray, chunk: int) -> np.ndarray:
    out = [r.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return np.concatenate([*out, r.flush()])


def noise(rate: int, seconds: float = 1.0) -> np.ndarray:
    x = np.random.default_rng(1).normal(0, 6000, int(rate * seconds))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def sine(freq: float, rate: int, level: float = 10000.0) -> np.ndarray:
    return np.round(level * np.sin(2 * np.pi * freq * np.arange(rate) / rate)).astype(np.int16)


def gain_db(rates: tuple[int, int], freq: float) -> float:
    """Output/input amplitude of a sine (least-squares fit away from the ends)."""
    in_rate, out_rate = rates
    y = stream(RationalMinPhaseResampler(*rates), sine(freq, in_rate), in_rate // 50)
    t = np.arange(len(y))[len(y) // 4 : 3 * len(y) // 4] / out_rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y[len(y) // 4 : 3 * len(y) // 4], rcond=None)
    return float(20 * np.log10(np.hypot(*coef) / 10000))


def level_db(y: np.ndarray, out_rate: int, freq: float) -> float:
    """The level of ``freq`` in ``y`` against a 10000 amplitude sine, in dB."""
    y = y[len(y) // 4 : 3 * len(y) // 4].astype(np.float64)
    t = np.arange(len(y)) / out_rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return float(20 * np.log10(max(np.hypot(*coef), 1e-9) / 10000))


def test_the_converter_for_g722_is_this_one() -> None:
    assert isinstance(converter(16000, 24000), RationalMinPhaseResampler)
    assert isinstance(converter(24000, 16000), RationalMinPhaseResampler)


@pytest.mark.parametrize("rates", [UP, DOWN])
def test_every_20ms_chunk_comes_out_whole_at_once(rates: tuple[int, int]) -> None:
    in_rate, out_rate = rates
    r = RationalMinPhaseResampler(*rates)
    x = noise(in_rate)
    for i in range(0, len(x), in_rate // 50):
        assert len(r.process(x[i : i + in_rate // 50])) == out_rate // 50
        assert r.delay_ms < 1000 / in_rate + 1e-9  # at most one input sample waits


def test_at_most_one_input_sample_waits() -> None:
    r = RationalMinPhaseResampler(*UP)
    for n in range(1, 40):
        r.process(noise(16000)[:n])
        assert 0.0 <= r.delay_ms < 1000 / 16000 + 1e-9


@pytest.mark.parametrize("rates", [UP, DOWN])
def test_an_impulse_comes_out_an_eighth_of_a_millisecond_late(rates: tuple[int, int]) -> None:
    in_rate, out_rate = rates
    x = np.zeros(in_rate // 10, dtype=np.int16)
    x[in_rate // 20] = 20000
    y = stream(RationalMinPhaseResampler(*rates), x, in_rate // 50)
    assert len(y) == out_rate // 10
    late_ms = (int(np.argmax(np.abs(y))) - out_rate // 20) * 1000 / out_rate
    assert 0.0 <= late_ms <= 0.25


@pytest.mark.parametrize("freq", [100, 300, 1000, 3400, 5000, 6500, 7000])
def test_band_is_flat_within_0_05_db_to_7_khz_up_and_down(freq: float) -> None:
    assert abs(gain_db(UP, freq)) < 0.05
    assert abs(gain_db(DOWN, freq)) < 0.05


def test_images_and_aliases_are_65_db_down() -> None:
    # Up: a 6 kHz tone's image lands at 10 kHz; down: a 10 kHz tone folds to 6 kHz.
    up = stream(RationalMinPhaseResampler(*UP), sine(6000, 16000), 320)
    assert level_db(up, 24000, 10000) < -65
    down = stream(RationalMinPhaseResampler(*DOWN), sine(10000, 24000), 480)
    assert level_db(down, 16000, 6000) < -65


@pytest.mark.parametrize("rates", [UP, DOWN])
def test_streaming_equals_the_whole_signal_bit_for_bit(rates: tuple[int, int]) -> None:
    in_rate = rates[0]
    x = noise(in_rate)
    whole = RationalMinPhaseResampler(*rates).process(x)
    r, parts, i = RationalMinPhaseResampler(*rates), [], 0
    for n in np.random.default_rng(2).integers(1, 2000, 400):
        parts.append(r.process(x[i : i + n]))
        i += int(n)
    assert np.array_equal(np.concatenate(parts)[: len(whole)], whole)


def test_reset_forgets_history_and_rejects_what_it_cannot_do() -> None:
    r = RationalMinPhaseResampler(*UP)
    r.process(noise(16000)[:333])
    r.reset()
    assert not r.process(np.zeros(320, dtype=np.int16)).any()
    with pytest.raises(TypeError):
        r.process(np.zeros(320, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RationalMinPhaseResampler(16000, 16000)


def test_wideband_pesq_of_the_round_trip_is_soxr_mqs(tmp_path: Path) -> None:
    """16k -> 24k -> 16k in 20 ms chunks, as a G.722 call's audio goes: P.862.2 wideband."""
    pesq = pytest.importorskip("pesq").pesq
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox (scripts/install-test-peers.sh)")
    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
    x = speech_wav(tmp_path / "speech.wav", text, 16000, 0.5, 0.5)

    def round_trip(make: type[RationalMinPhaseResampler] | type[Resampler]) -> float:
        back = stream(make(*DOWN), stream(make(*UP), x, 320), 480)
        return float(pesq(16000, x, back[: len(x)], "wb"))

    ours, before = round_trip(RationalMinPhaseResampler), round_trip(Resampler)
    print(f"\nPESQ-WB 16k->24k->16k: minimum phase {ours:.3f}, soxr MQ {before:.3f}")
    assert ours >= before - 0.05
