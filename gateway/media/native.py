"""The compiled media kernels (``_dsp.c``), when they are there: None otherwise.

The per-packet arithmetic (the minimum-phase FIR, the G.711 tables) runs in C when the module
was built (``pip install`` compiles it; setup.py marks it optional, so an install without a C
compiler still works) and through numpy when not: the same results, bit for bit
(tests/unit/test_dsp_native.py).  ``GATEWAY_NUMPY_MEDIA=1`` in the environment keeps to numpy,
for comparing the two (tests/perf/bench_frame.py).  Samples cross as native int16, so big-endian
machines keep to numpy too; the same switch sends packets through Python (``rtp_out.py``).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

__all__ = ["dsp"]


def _load() -> ModuleType | None:
    if sys.byteorder != "little" or os.environ.get("GATEWAY_NUMPY_MEDIA") == "1":
        return None
    try:
        from . import _dsp
    except ImportError:
        return None
    return _dsp


dsp = _load()
