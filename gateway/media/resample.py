"""Streaming sample-rate conversion (8 kHz <-> 24 kHz) over ``soxr.ResampleStream``.

One ``Resampler`` per call per direction, because the filter keeps state across chunks: that
state is what makes a stream cut into 20 ms pieces come out identical to the whole signal
resampled at once, with no click at chunk edges.

What the latency looks like (libsoxr 0.1.3, python-soxr 1.1.0, measured in the unit tests):

* soxr removes the filter's group delay itself: output sample ``n`` is time-aligned with input
  time ``n / out_rate`` (an impulse comes out where it went in).  The price is paid as
  hold-back instead: output is emitted only once the filter has seen enough input.
* Its DFT-based engines filter in blocks, so at "HQ" 20 ms chunks come out in bursts of about
  61 ms every third chunk (nothing for the first 80 ms), whatever the direction.  The
  hold-back therefore swings between about 13 and 73 ms (mean 43 ms).  MQ is no better, LQ
  loses 8 dB at 3.4 kHz, VHQ doubles the hold-back.
* ``delay_ms`` reports the hold-back right now (``soxr_delay``), which is what an accounting of
  "sent vs. played" or a latency metric needs; ``flush`` releases it at the end of a stream.
"""

from __future__ import annotations

import numpy as np
import soxr

__all__ = ["Resampler"]

_EMPTY = np.zeros(0, dtype=np.float32)
_EMPTY.setflags(write=False)


def _to_int16(y: np.ndarray) -> np.ndarray:
    np.rint(y, out=y)
    np.clip(y, -32768.0, 32767.0, out=y)
    return y.astype(np.int16)


class Resampler:
    """int16 mono in, int16 mono out; output length varies from chunk to chunk."""

    __slots__ = ("_stream", "in_rate", "out_rate", "quality")

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        # An unknown quality gets soxr's ValueError, which names the valid ones.
        # float32, not int16, inside: soxr adds TPDF dither to int16 output (digital silence
        # comes out as +-1 LSB noise, different on every run and for every chunking).
        # Float in, our own rounding out, is deterministic and chunking-invariant to the bit.
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Feed one chunk; returns whatever output is ready (possibly empty)."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError(
                f"Resampler.process expects a 1-D int16 ndarray, got {type(pcm).__name__}"
                f" {getattr(pcm, 'dtype', '')}{getattr(pcm, 'shape', '')}"
            )
        return _to_int16(self._stream.resample_chunk(pcm.astype(np.float32)))

    def flush(self) -> np.ndarray:
        """Return the held-back tail (end of a model response); then ready for a new stream."""
        tail = _to_int16(self._stream.resample_chunk(_EMPTY, last=True))
        self._stream.clear()  # soxr refuses input after last=True until cleared
        return tail

    def reset(self) -> None:
        """Drop the held-back audio and the filter history (barge-in: it must not be heard)."""
        self._stream.clear()

    @property
    def delay_ms(self) -> float:
        """Audio fed in but not yet returned, in ms (varies with soxr's block cadence)."""
        return self._stream.delay() * 1000.0 / self.out_rate
