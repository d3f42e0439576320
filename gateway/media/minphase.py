"""Telephone-band resampling without block hold-back: a minimum-phase FIR, streamed (8k <-> 24k).

Why not soxr here (issue 19, measured in ``tests/perf/bench_latency.py``): libsoxr filters in
DFT blocks, so its output comes in blocks too.  With the real-time DFT bounds of
``resample.py`` a caller's sample waited 21 ms on average before it could leave (MQ, linear
phase; 10-32 ms hold-back), and no soxr recipe reaches 3 ms with a flat telephone band: HQ
with minimum phase still holds back 0.5-18.5 ms (mean 9.5), LQ with minimum phase 0.5-5.5 ms
but loses 7.8 dB at 3.4 kHz, smaller DFTs are refused (libsoxr falls back to 4x blocks,
hold-back up to 66 ms), and the variable-rate engine holds 25-30 ms.

A polyphase FIR evaluated per sample has no blocks: every input sample yields its outputs at
once, and the only delay is the filter's own.  Minimum phase puts that delay at 0.2-0.6 ms in
the band (linear phase would cost half the filter, 1.8 ms); the ear and the model hear no
phase, and PESQ of the 8k -> 24k -> 8k path is that of soxr MQ (4.545 vs 4.548 on espeak-ng
speech, bench_latency's ``filters``).  Unlike soxr, the output is not shifted back into time
alignment: output sample ``n`` carries input time ``n / out_rate`` delayed by the filter
(``DELAY_MS``, where its impulse response peaks: 0.25 ms).  Aligning would hold that much back,
and the playback would then find every 100 ms delta 2 samples short of its fifth frame: an
underrun, and every later delta a whole frame late (measured: downlink p50 31 ms instead of
13).  A quarter of a millisecond is nothing to the "heard" accounting (whole milliseconds).
The design, at the high rate: Kaiser window, 87 taps for 3x, cut-off 4 kHz, transition
3.4-4.6 kHz, 70 dB design stopband (69 dB once minimum phase: images of the 8 kHz band on the
way up, aliases into the band on the way down), in-band ripple under 0.01 dB; made minimum
phase with the same magnitude by folding its real cepstrum.

Bit-exact and chunking-independent: the taps are integers (scaled by 2^20) held in float64,
then scaled by 2^-20 (exact), so every product and every sum of int16 samples with them is
exact in float64 (below 2^53 units of 2^-20) and the BLAS product gives the same result in
any order; the output is rounded half to even and clipped.  State per stream: the filter's
history (28 input samples up, 86 down) in a buffer of 40 ms: 2.8 KiB up, 8.4 KiB down (soxr
MQ: 17 KiB for both).
CPU: in C (``_dsp.c``'s ``Fir``: the same sums and rounding, bit for bit) 2.5 us per 20 ms up
and 1.7 down, the Python around it included, with 300 calls' filters used in turn.  Through
numpy, where the module is not built: 4.5-6 us each way (soxr: ~3.5), 7-9 us with 300 calls'
filters in turn: whole blocks of outputs are one BLAS product against a banded matrix
(``_banded``), since BLAS cannot read the overlapping rows of the strided view and numpy's own
loop over them cost 8-10 us.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .native import dsp
from .rates import MODEL_RATE, TELEPHONE_RATE

__all__ = ["MinPhaseResampler", "design", "minimum_phase_lowpass"]

PASS_HZ, STOP_HZ = 3400.0, 4600.0
STOPBAND_DB = 70.0
SCALE_BITS = 20  # taps as integers: 2^20 * |tap| * int16 * taps < 2^53 (exact in float64)
_INT16 = np.dtype(np.int16)
PIECE_MS = 40
DELAY_MS = 0.25  # where the 3x filter's impulse response peaks: see test_minphase.py
_MAX_VIEWS = 16  # strided views kept per stream, two per chunk length seen (20 ms: one)
# Output rows per BLAS block (measured with tests/perf/bench_frame.py: a 20 ms chunk in 4.4 ->
# 2.5 us up, 5.6 -> 2.4 us down); larger blocks multiply more zeros of the banded matrix.
UP_BLOCK, DOWN_BLOCK = 16, 8


@functools.cache
def design(ratio: int) -> np.ndarray:
    """Minimum-phase low-pass taps at ``ratio`` x 8 kHz (float64, DC gain 1)."""
    return minimum_phase_lowpass(TELEPHONE_RATE * ratio, PASS_HZ, STOP_HZ, ratio)


def minimum_phase_lowpass(rate: int, pass_hz: float, stop_hz: float, multiple: int) -> np.ndarray:
    """Kaiser-window low-pass at ``rate`` (``STOPBAND_DB``, a length that is a multiple of
    ``multiple``), made minimum phase with the same magnitude (float64, DC gain 1)."""
    width = (stop_hz - pass_hz) / rate  # cycles per sample
    taps = int(np.ceil((STOPBAND_DB - 7.95) / (2.285 * 2 * np.pi * width) / multiple)) * multiple
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    t = np.arange(taps) - (taps - 1) / 2
    cutoff = (pass_hz + stop_hz) / 2 / rate
    linear = 2 * cutoff * np.sinc(2 * cutoff * t) * np.kaiser(taps, beta)
    linear /= linear.sum()
    # Minimum phase with the same magnitude: fold the real cepstrum of log|H| onto n >= 0.
    nfft = 1 << 16
    magnitude = np.maximum(np.abs(np.fft.fft(linear, nfft)), 1e-9)
    cepstrum = np.fft.ifft(np.log(magnitude)).real
    fold = np.zeros(nfft)
    fold[0] = cepstrum[0]
    fold[1 : nfft // 2] = 2 * cepstrum[1 : nfft // 2]
    fold[nfft // 2] = cepstrum[nfft // 2]
    minimum = np.fft.ifft(np.exp(np.fft.fft(fold))).real[:taps]
    taps_out: np.ndarray = minimum / minimum.sum()
    taps_out.setflags(write=False)
    return taps_out


class MinPhaseResampler:
    """int16 mono in, int16 mono out, 8 kHz <-> an integer multiple of it; the same interface
    as :class:`~gateway.media.resample.Resampler` (``process``, ``flush``, ``reset``,
    ``delay_ms``).  Up: exactly ``ratio`` outputs per input sample.  Down: output ``m`` is
    input sample ``ratio * m`` filtered; at most ``ratio - 1`` input samples wait for it."""

    __slots__ = ("_banded", "_block", "_buf", "_emitted", "_fed", "_hist", "_native", "_phase",
                 "_step", "_views", "_weights", "in_rate", "out_rate", "ratio")  # fmt: skip

    def __init__(self, in_rate: int, out_rate: int, native: bool = True) -> None:
        low, high = sorted((in_rate, out_rate))
        if low != TELEPHONE_RATE or high % low or high == low:
            raise ValueError(
                f"MinPhaseResampler converts 8000 Hz <-> a multiple of it,"
                f" got {in_rate} -> {out_rate}"
            )
        self.in_rate, self.out_rate = in_rate, out_rate
        self.ratio = ratio = high // low
        # Integers scaled back by 2^-20: a power of two, so still exact (see above).
        taps = np.round(design(ratio) * (1 << SCALE_BITS)) / (1 << SCALE_BITS)
        if out_rate > in_rate:  # polyphase: column p makes output ratio * n + p
            per_phase = len(taps) // ratio
            self._weights = taps.reshape(per_phase, ratio)[::-1] * ratio
        else:
            self._weights = taps[::-1].copy()
        self._hist = self._weights.shape[0] - 1  # input samples of history the filter needs
        self._step = 1 if out_rate > in_rate else ratio  # input samples from one row to the next
        self._block = UP_BLOCK if out_rate > in_rate else DOWN_BLOCK
        self._views: dict[tuple[int, int, int], np.ndarray] = {}
        self._phase = 0  # down: input samples to skip before the next output's sample
        self._fed = self._emitted = 0
        piece = in_rate * PIECE_MS // 1000  # input is filtered in pieces of at most 40 ms
        # The same filter in C (``native.py``), which then owns the history and the phase; the
        # numpy path's buffers are not allocated then (13-25 KiB a filter).
        self._native = (
            dsp.Fir(
                np.ascontiguousarray(self._weights.T).tobytes(),  # a row per phase
                ratio if out_rate > in_rate else 1,
                1 if out_rate > in_rate else ratio,
                piece,
            )
            if native and dsp is not None
            else None
        )
        numpy = self._native is None
        self._banded = _banded(self._weights, self._step, self._block if numpy else 1)
        # A bounded buffer whatever a delta's size.
        self._buf = np.zeros(self._hist + piece if numpy else 0, dtype=np.float64)

    def _view(self, start: int, rows: int, block: int) -> np.ndarray:
        """Row i: the input window of outputs ``block * i`` to ``block * i + block - 1``, from
        buffer sample ``start`` (cached: as_strided costs microseconds)."""
        key = (start, rows, block)
        view = self._views.get(key)
        if view is None:
            item = self._buf.strides[0]
            span = (block - 1) * self._step + self._hist + 1
            view = as_strided(
                self._buf[start:], (rows, span), (item * self._step * block, item), writeable=False
            )
            if len(self._views) >= _MAX_VIEWS:
                self._views.clear()
            self._views[key] = view
        return view

    def _product(self, start: int, rows: int) -> np.ndarray:
        """The filter's output for ``rows`` input windows from buffer sample ``start``.

        Whole blocks go through BLAS against the banded matrix (a contiguous copy of their
        windows first: BLAS cannot read overlapping rows, and numpy's own loop for a strided
        product costs twice as much); the rows after the last whole block, if any, through
        numpy's loop.
        """
        block = self._block
        blocks = rows // block
        if blocks:
            windows = np.ascontiguousarray(self._view(start, blocks, block))
            out = (windows @ self._banded).ravel()
            rest = rows - blocks * block
            if not rest:
                return out
            tail = self._view(start + blocks * block * self._step, rest, 1) @ self._weights
            return np.concatenate((out, tail.ravel()))
        if not rows:
            return np.zeros(0)
        return (self._view(start, rows, 1) @ self._weights).ravel()

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Feed one chunk; returns every output sample it completes (a new array)."""
        if type(pcm) is not np.ndarray or pcm.dtype is not _INT16 or pcm.ndim != 1:
            raise TypeError(
                f"MinPhaseResampler.process expects a 1-D int16 ndarray, got {type(pcm).__name__}"
                f" {getattr(pcm, 'dtype', '')}{getattr(pcm, 'shape', '')}"
            )
        if self._native is not None:
            out = np.frombuffer(self._native.process(np.ascontiguousarray(pcm)), dtype=_INT16)
            self._fed += len(pcm)
            self._emitted += len(out)
            return out
        piece = self._buf.shape[0] - self._hist
        if len(pcm) <= piece:
            out = self._filter(pcm)
        else:
            out = np.concatenate(
                [self._filter(pcm[i : i + piece]) for i in range(0, len(pcm), piece)]
            )
        self._fed += len(pcm)
        self._emitted += len(out)
        return out

    def _filter(self, pcm: np.ndarray) -> np.ndarray:
        n = pcm.shape[0]
        buf, hist = self._buf, self._hist
        buf[hist : hist + n] = pcm
        if self.out_rate > self.in_rate:
            acc = self._product(0, n)
        else:
            start = self._phase
            acc = self._product(start, max(0, -(-(n - start) // self.ratio)))
            self._phase = (start - n) % self.ratio
        buf[:hist] = buf[n : n + hist]
        np.rint(acc, out=acc)
        np.minimum(acc, 32767.0, out=acc)  # np.clip costs three times as much
        np.maximum(acc, -32768.0, out=acc)
        return acc.astype(np.int16)

    def flush(self) -> np.ndarray:
        """End of a stream; then ready for a new one.  Nothing is held back (a stream's
        length is already its input's times the ratio, rounded up), so nothing comes out: the
        filter's ring-out past the end is not emitted."""
        self.reset()
        return np.zeros(0, dtype=np.int16)

    def reset(self) -> None:
        """Forget the filter history and what it holds back (a barge-in, or a new stream)."""
        if self._native is not None:
            self._native.reset()
        self._buf[: self._hist] = 0.0
        self._phase = 0
        self._fed = self._emitted = 0

    @property
    def delay_ms(self) -> float:
        """Input fed but not yet returned, in ms: up to two input samples waiting for the
        next output when downsampling, else none."""
        if self.out_rate > self.in_rate:
            return 0.0
        # Output m is input sample ratio * m filtered: the inputs after the last one used wait.
        waiting = self._fed - (self._emitted - 1) * self.ratio - 1 if self._emitted else self._fed
        return waiting * 1000.0 / self.in_rate


def _banded(weights: np.ndarray, step: int, block: int) -> np.ndarray:
    """The filter of ``block`` consecutive outputs as one matrix: a window of
    ``(block - 1) * step + taps`` input samples times it gives their outputs in order (each
    output's taps shifted ``step`` further down than the previous one's; zeros elsewhere,
    which add nothing, exactly)."""
    taps = weights.reshape(weights.shape[0], -1)
    width = taps.shape[1]
    banded = np.zeros(((block - 1) * step + taps.shape[0], block * width))
    for row in range(block):
        banded[row * step : row * step + taps.shape[0], row * width : (row + 1) * width] = taps
    banded.setflags(write=False)
    return banded


# The bridge's filter is designed at import, at start-up: its FFTs take ~25 ms, which the first
# call's set-up on the event loop would otherwise pay.
design(MODEL_RATE // TELEPHONE_RATE)
