"""G.722's 16 kHz <-> the model's 24 kHz without block hold-back: a minimum-phase polyphase FIR
for a rational ratio (3/2 up, 2/3 down), streamed.

Why not soxr (measured in ``tests/unit/test_minphase_rational.py`` and the README's HD voice
figures): soxr MQ with the gateway's real-time DFT bounds holds a 16 <-> 24 kHz stream back
5-16 ms each way (mean 10.5 ms), in blocks; G.711's path lost the same kind of delay to
``minphase.py``. This is that filter for a ratio L/M: conceptually the input is stuffed with
L - 1 zeros to 48 kHz, low-passed there, and every M-th sample kept; in practice output ``m``
is one dot product of phase ``(M * m) % L`` of the taps with the inputs up to
``(M * m) // L``, so every output is emitted as soon as its last input sample arrived (at most
one input sample waits) and the only delay is the filter's own (minimum phase: its impulse
response peaks at 0.1 ms).

The design, at 48 kHz: Kaiser window, 70 dB, pass band to 7 kHz (G.722's band is 50-7000 Hz),
stop band from 9 kHz (images of a 16 kHz signal start at 16 - 7 = 9 kHz; what the model says
between 8 and 9 kHz may fold into 7-8 kHz on the way down, above the band), minimum phase by
folding the real cepstrum (``minphase.minimum_phase_lowpass``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .minphase import SCALE_BITS, minimum_phase_lowpass
from .native import dsp

__all__ = ["PASS_HZ", "STOP_HZ", "RationalMinPhaseResampler", "phases"]

PASS_HZ, STOP_HZ = 7000.0, 9000.0
PIECE_MS = 40
_INT16 = np.dtype(np.int16)
_MAX_VIEWS = 16  # strided views kept per stream: a 20 ms chunk uses up to 3 phases x 2 shapes


@functools.cache
def phases(up: int, high_rate: int) -> np.ndarray:
    """The taps at ``high_rate`` split into ``up`` phases, each reversed for a dot product
    with an ascending window of inputs and scaled by ``up`` (the zeros stuffed in)."""
    taps = minimum_phase_lowpass(high_rate, PASS_HZ, STOP_HZ, up)
    # Integers scaled back by 2^-20, as minphase.py's: every sum exact in float64, in any order.
    taps = np.round(taps * (1 << SCALE_BITS)) / (1 << SCALE_BITS)
    per_phase = len(taps) // up
    weights = taps.reshape(per_phase, up).T[:, ::-1] * up
    out: np.ndarray = np.ascontiguousarray(weights)
    out.setflags(write=False)
    return out


class RationalMinPhaseResampler:
    """int16 mono in and out, ``in_rate`` -> ``out_rate`` by L/M; the interface of
    :class:`~gateway.media.minphase.MinPhaseResampler` (``process``, ``flush``, ``reset``,
    ``delay_ms``)."""

    __slots__ = ("_buf", "_emitted", "_fed", "_hist", "_native", "_views", "_weights", "down",
                 "in_rate", "out_rate", "up")  # fmt: skip

    def __init__(self, in_rate: int, out_rate: int, native: bool = True) -> None:
        if in_rate <= 0 or out_rate <= 0 or in_rate == out_rate:
            raise ValueError(f"cannot resample {in_rate} -> {out_rate}")
        g = math.gcd(in_rate, out_rate)
        self.up, self.down = out_rate // g, in_rate // g
        if self.up * in_rate > 96000:
            raise ValueError(f"{in_rate} -> {out_rate} needs too high an inner rate")
        self.in_rate, self.out_rate = in_rate, out_rate
        self._weights = phases(self.up, self.up * in_rate)
        self._hist = self._weights.shape[1] - 1  # input samples of history the filter needs
        self._fed = self._emitted = 0  # inputs and outputs since the stream began
        self._views: dict[tuple[int, int], np.ndarray] = {}  # as_strided costs microseconds
        piece = in_rate * PIECE_MS // 1000  # input is filtered in pieces of at most 40 ms
        # The same filter in C (``native.py``), which then owns the history (and the numpy
        # path's buffer is not allocated).
        self._native = (
            dsp.Fir(self._weights.tobytes(), self.up, self.down, piece)
            if native and dsp is not None
            else None
        )
        self._buf = np.zeros(self._hist + piece if self._native is None else 0, dtype=np.float64)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Feed one chunk; returns every output sample it completes (a new array)."""
        if type(pcm) is not np.ndarray or pcm.dtype is not _INT16 or pcm.ndim != 1:
            raise TypeError(
                "RationalMinPhaseResampler.process expects a 1-D int16 ndarray, got"
                f" {type(pcm).__name__} {getattr(pcm, 'dtype', '')}{getattr(pcm, 'shape', '')}"
            )
        if self._native is not None:
            out = np.frombuffer(self._native.process(np.ascontiguousarray(pcm)), dtype=_INT16)
            self._fed += len(pcm)
            self._emitted += len(out)
            return out
        piece = self._buf.shape[0] - self._hist
        if len(pcm) <= piece:
            return self._filter(pcm)
        return np.concatenate([self._filter(pcm[i : i + piece]) for i in range(0, len(pcm), piece)])

    def _filter(self, pcm: np.ndarray) -> np.ndarray:
        n, up, down, hist = pcm.shape[0], self.up, self.down, self._hist
        buf, fed, first = self._buf, self._fed, self._emitted
        buf[hist : hist + n] = pcm
        end = -(-up * (fed + n) // down)  # outputs whose last input has arrived
        acc = np.empty(max(end - first, 0), dtype=np.float64)
        for r in range(up):  # outputs m = m0, m0 + up, ...: inputs advance by ``down``
            m0 = first + (r - first) % up
            if m0 >= end:
                continue
            rows = (end - 1 - m0) // up + 1
            start = (down * m0) // up - fed  # the window ends at this chunk's input
            acc[m0 - first :: up] = self._view(start, rows) @ self._weights[(down * m0) % up]
        buf[:hist] = buf[n : n + hist]
        self._fed, self._emitted = fed + n, max(end, first)
        np.rint(acc, out=acc)
        np.minimum(acc, 32767.0, out=acc)
        np.maximum(acc, -32768.0, out=acc)
        return acc.astype(np.int16)

    def _view(self, start: int, rows: int) -> np.ndarray:
        """Row i: the window of inputs for the i-th output of one phase (cached: a steady
        chunk size repeats a few (start, rows) pairs)."""
        view = self._views.get((start, rows))
        if view is None:
            step = self._buf.strides[0]
            view = as_strided(
                self._buf[start:], (rows, self._hist + 1), (step * self.down, step),
                writeable=False,
            )  # fmt: skip
            if len(self._views) >= _MAX_VIEWS:
                self._views.clear()
            self._views[(start, rows)] = view
        return view

    def flush(self) -> np.ndarray:
        """End of a stream; then ready for a new one. Nothing is held back but the part of an
        input sample an output still waits for: nothing comes out."""
        self.reset()
        return np.zeros(0, dtype=np.int16)

    def reset(self) -> None:
        """Forget the filter history (a barge-in, or a new stream)."""
        if self._native is not None:
            self._native.reset()
        self._buf[: self._hist] = 0.0
        self._fed = self._emitted = 0

    @property
    def delay_ms(self) -> float:
        """Input fed but not yet used by an output, in ms (under one input sample's time)."""
        used = (self.down * (self._emitted - 1)) // self.up + 1 if self._emitted else 0
        return (self._fed - used) * 1000.0 / self.in_rate
