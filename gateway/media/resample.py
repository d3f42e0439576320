"""Streaming sample-rate conversion over libsoxr (python-soxr), for any pair of rates.

The call's own 8 kHz <-> 24 kHz conversion (the bridge, both ways) no longer uses it: soxr's
block filtering held audio back 10-32 ms, and ``minphase.py`` says what replaced it and why.
This one serves the other rates (``gateway dial``'s prompt files, the embedded agent).

One ``Resampler`` per call per direction, because the filter keeps state across chunks: that
state is what makes a stream cut into 20 ms pieces come out identical to the whole signal
resampled at once, with no click at chunk edges.

Quality: MQ, soxr's 16-bit filter. Its SNR (92 dB on a 1 kHz sine, 80 dB on speech in the
telephone band, in the unit tests) is 40 dB and more above what G.711 carries (~38 dB), so the
call sounds no different from HQ's 20-bit filter; what differs is its state: 17 KiB per call
for both directions against HQ's 99 KiB (44 up, 55 down). With HQ, 200 calls' filters (20 MB)
spill out of the caches, and soxr's ~5 us per 20 ms chunk on the bench became ~14 us under
load: 150 calls took 0.85 core with HQ, 0.75 with MQ (`tests/perf/bench_load.py`, same rig),
and the gap p99 at 200 calls went from 31-55 ms to 22 ms.

What the latency looks like (libsoxr 0.1.3, python-soxr 1.1.0, measured in the unit tests):

* soxr removes the filter's group delay itself: output sample ``n`` is time-aligned with input
  time ``n / out_rate`` (an impulse comes out where it went in).  The price is paid as
  hold-back instead: output is emitted only once the filter has seen enough input.
* HQ's filters are linear phase; half of one (12.5 ms at 8 kHz <-> 24 kHz) is look-ahead no
  setting can remove.  On top of that, the DFT stage filters in blocks of (DFT length - filter
  length + 1) samples.  libsoxr sizes the DFT at 4x the filter for throughput
  (``set_dft_length`` in cr.c, bounded by the runtime spec's ``log2_min_dft_size`` = 10 and
  ``log2_large_dft_size`` = 17), which turns 20 ms chunks into a 61 ms burst every third chunk:
  hold-back 12-73 ms, mean 43 ms.
* We set both bounds to 8, as libsoxr's own note for real-time use says (soxr-lsr.c: "To
  minimise latency e.g. for real-time playback").  With HQ the DFT drops to 2x the filter, a
  block to 18.5 ms: every 20 ms chunk yields output and the hold-back is 12.5-30.5 ms (mean
  21.5 ms).  With MQ (what we use) a block is 23 ms: one 20 ms chunk in 7-8 yields nothing
  and the next two blocks, hold-back 10-32 ms (mean 21.1 ms); without the bounds MQ bursts
  66 ms every third or fourth chunk.  The same filter either way, so the same SNR.  python-soxr
  exposes no runtime spec, but ``soxr_create`` reads these two bounds from the environment
  (``SOXR_MIN_DFT_SIZE``, ``SOXR_LARGE_DFT_SIZE``) at every call, which is what we use.
* Measured alternatives: LQ 3-8 ms (loses 8 dB at 3.4 kHz), VHQ 17-69 ms; HQ with minimum
  phase (recipe flag 0x30, reachable only by handing python-soxr's extension class the raw
  recipe) 0.5-18.5 ms but distorts the waveform's phase.
* ``delay_ms`` reports the hold-back right now (``soxr_delay``), which is what an accounting of
  "sent vs. played" or a latency metric needs; ``flush`` releases it at the end of a stream.
"""

from __future__ import annotations

import os

import numpy as np
import soxr

__all__ = ["QUALITY", "Resampler"]

QUALITY = "MQ"  # see above: HQ's fidelity, unheard on a phone line, at a sixth of its state

# libsoxr's runtime bounds on the DFT size (log2), read by every soxr_create: see above.  Set
# on import, while the process has one thread (setenv races with getenv in other threads).
LOW_LATENCY_ENV = {"SOXR_MIN_DFT_SIZE": "8", "SOXR_LARGE_DFT_SIZE": "8"}
os.environ.update(LOW_LATENCY_ENV)

_QUALITIES = {"QQ": soxr.QQ, "LQ": soxr.LQ, "MQ": soxr.MQ, "HQ": soxr.HQ, "VHQ": soxr.VHQ}
_INT16 = np.dtype(np.int16)
_ROUND = -0x8000  # the low half of every input sample: +0.5 LSB, see ``Resampler``
_EMPTY = np.zeros((0, 1), dtype=np.int32)
_EMPTY.setflags(write=False)


class Resampler:
    """int16 mono in, int16 mono out; output length varies from chunk to chunk.

    Inside, 32-bit integers: each int16 sample is the high half of an int32 whose low half is
    0x8000, i.e. the sample plus half an LSB. libsoxr converts int32 to its float pipeline and
    back with rounding and clipping in C, and never dithers 32-bit output (it dithers int16
    output: silence would come out as +-1 LSB noise, different on every run). The high half of
    each output int32 is then floor(y + 0.5), the output rounded to int16: deterministic and
    independent of how the stream is chunked, bit for bit. The float32 path this replaces
    needed five numpy passes per chunk to convert, clip and round (measured 9.3 -> 6.2 us per
    20 ms caller frame, G.711 decode included), on the media path of every call.

    python-soxr's ``ResampleStream`` is skipped for its extension class ``CSoxr`` (typed in
    ``soxr_ext.pyi``): the wrapper's per-chunk checks and ``np.squeeze`` cost more than
    libsoxr's filtering of a 20 ms chunk.
    """

    __slots__ = ("_in", "_in16", "_process", "_soxr", "in_rate", "out_rate", "quality")

    def __init__(self, in_rate: int, out_rate: int, quality: str = QUALITY) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        recipe = _QUALITIES.get(str(quality).upper())
        if recipe is None:
            raise ValueError(f"quality must be one of {', '.join(_QUALITIES)}, got {quality!r}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        self._soxr = soxr.soxr_ext.CSoxr(
            in_rate, out_rate, 1, soxr.soxr_ext.SOXR_INT32_I, recipe, False
        )
        self._process = self._soxr.process_int32
        self._grow(in_rate // 10)  # 100 ms; a longer chunk grows the buffer once

    def _grow(self, samples: int) -> None:
        # Input buffer reused for every chunk (libsoxr copies what it is given): (n, 1) int32,
        # seen through ``_in16`` as (n, 2) int16 halves, low halves fixed at 0x8000.
        self._in = np.empty((samples, 1), dtype=np.int32)
        self._in16 = self._in.view(np.int16)
        self._in16[:, 0] = _ROUND

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Feed one chunk; returns whatever output is ready (possibly empty). The result may
        be a strided view: ``tobytes()`` or copy it to get contiguous samples."""
        if type(pcm) is not np.ndarray or pcm.dtype is not _INT16 or pcm.ndim != 1:
            raise TypeError(
                f"Resampler.process expects a 1-D int16 ndarray, got {type(pcm).__name__}"
                f" {getattr(pcm, 'dtype', '')}{getattr(pcm, 'shape', '')}"
            )
        n = pcm.shape[0]
        if n > self._in.shape[0]:
            self._grow(n)
        self._in16[:n, 1] = pcm
        return self._process(self._in[:n], False).view(np.int16)[:, 1]

    def flush(self) -> np.ndarray:
        """Return the held-back tail (end of a model response); then ready for a new stream."""
        tail = self._process(_EMPTY, True).view(np.int16)[:, 1]
        self._soxr.clear()  # libsoxr refuses input after the last chunk until cleared
        return tail

    def reset(self) -> None:
        """Drop the held-back audio and the filter history (barge-in: it must not be heard)."""
        self._soxr.clear()

    @property
    def delay_ms(self) -> float:
        """Audio fed in but not yet returned, in ms (varies with soxr's block cadence)."""
        return self._soxr.delay() * 1000.0 / self.out_rate
