"""Two cues of a 20 ms frame that a speech detector misses, for local barge-in (sans-I/O).

WebRTC's detector calls a loud key tone or a door bang speech when it stands well over the
background (docs/barge-in.md: a caller at -30 dBFS with bangs and DTMF 5 dB under them was
paused about 120 times per 10 minutes each). Two facts of the signal tell them from a voice:

* **a key tone** (DTMF, ITU-T Q.23): one frequency of the low group and one of the high group
  hold nearly all of the frame's energy (>= ``DTMF_SHARE``). Speech spreads its energy over
  harmonics and formants: at most 0.47 of it at the best pair on the speech set, 0.58 for the
  agent's echo, 0.99-1.05 for key tones;
* **a voiced frame**: its spectrum over the telephone band (300-3,400 Hz) is far from flat,
  harmonics and formants (spectral flatness, the geometric over the arithmetic mean of the
  power, <= ``VOICED_FLATNESS``): speech frames 0.003-0.08 (5th-95th percentile), a cough,
  a bang or a key click 0.36-0.81, as broadband as noise.

A voice's onset must hold at least one voiced frame; a key tone frame never counts. Only the
frames already past the level gate and the speech detector are looked at (a few per second of
a noisy line, all of them while the caller talks): one 256-point FFT and a 16 x 160 product.
"""

from __future__ import annotations

import math

import numpy as np

from ..media.rates import TELEPHONE_RATE

RATE = TELEPHONE_RATE
FRAME = RATE // 50  # 20 ms, as the detector's frames
DTMF_HZ = (697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0)
DTMF_SHARE = 0.8
DTMF_EACH = 0.1  # and each tone at least this much of it (a key, not one tone: twist < 9 dB)
VOICED_FLATNESS = 0.2
FFT = 256
BAND_HZ = (300.0, 3400.0)

_t = np.arange(FRAME) / RATE
_tones = 2 * np.pi * np.asarray(DTMF_HZ)[:, None] * _t
_PROBE = np.concatenate((np.cos(_tones), np.sin(_tones)))  # rows: cos then sin, per tone
_WINDOW = np.hanning(FRAME)
_f = np.fft.rfftfreq(FFT, 1 / RATE)
_BAND = slice(int(np.searchsorted(_f, BAND_HZ[0])), int(np.searchsorted(_f, BAND_HZ[1], "right")))
_BINS = _BAND.stop - _BAND.start
_TINY = 1e-3  # power floor for the logarithm (an exactly silent bin)
_TO_ENERGY = 2.0 / FRAME


def key_tone(frame: np.ndarray, energy: float) -> bool:
    """True when two DTMF tones, one per group, hold ``DTMF_SHARE`` of ``energy`` (the sum of
    the float64 frame's squares), each of them ``DTMF_EACH``."""
    if energy <= 0.0:
        return False
    y = _PROBE @ frame
    y *= y
    power = (y[:8] + y[8:]).tolist()  # |X(f)|^2: a tone of energy E reads E * FRAME / 2
    low, high = max(power[:4]) * _TO_ENERGY, max(power[4:]) * _TO_ENERGY
    return low + high >= DTMF_SHARE * energy and min(low, high) >= DTMF_EACH * energy


def voiced(frame: np.ndarray) -> bool:
    """True when the float64 frame's telephone band is harmonic, not flat like noise."""
    spectrum = np.fft.rfft(frame * _WINDOW, FFT)[_BAND]
    power = spectrum.real * spectrum.real + spectrum.imag * spectrum.imag + _TINY
    # geometric mean <= flatness x arithmetic mean, in logarithms (one exp less)
    return float(np.log(power).sum()) / _BINS <= math.log(VOICED_FLATNESS * power.sum() / _BINS)
