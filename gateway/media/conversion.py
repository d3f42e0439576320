"""Which sample-rate converter joins a codec's rate to the model's 24 kHz, per codec.

* G.711, 8 kHz: the minimum-phase FIR of ``minphase.py`` (no block hold-back, 0.25 ms).
* G.722, 16 kHz: the same kind of filter for the ratio 3/2 (``minphase_rational.py``): soxr MQ
  held a 16 <-> 24 kHz stream back 5-16 ms each way (mean 10.5), this one nothing, for 8-9 us
  more per 20 ms frame each way; the same wideband PESQ.
* Any other pair (the embedded agent, ``gateway dial``'s prompts): soxr (``resample.py``).
* Opus, 24 kHz: nothing; libopus codes at 24 kHz itself.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .minphase import MinPhaseResampler
from .minphase_rational import RationalMinPhaseResampler
from .rates import TELEPHONE_RATE
from .resample import Resampler

__all__ = ["Converter", "converter"]


class Converter(Protocol):
    def process(self, pcm: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def reset(self) -> None: ...

    @property
    def delay_ms(self) -> float: ...


def converter(in_rate: int, out_rate: int) -> Converter | None:
    """A streaming converter from ``in_rate`` to ``out_rate``; None when they are equal."""
    if in_rate == out_rate:
        return None
    low, high = sorted((in_rate, out_rate))
    if low == TELEPHONE_RATE and high % low == 0:
        return MinPhaseResampler(in_rate, out_rate)
    if {in_rate, out_rate} == {16000, 24000}:
        return RationalMinPhaseResampler(in_rate, out_rate)
    return Resampler(in_rate, out_rate)
