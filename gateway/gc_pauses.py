"""The garbage collector's pauses, timed.

A collection stops the one event loop that paces every call's RTP: a full (generation 2)
collection over the objects of a few hundred calls takes tens of milliseconds, and that is a
gap every caller hears. The pauses are counted per generation for /debug/state, so a load run
can tell a GC pause from any other stall.
"""

from __future__ import annotations

import gc
import time
from typing import Any

LONG_MS = 10.0  # a pause the caller may hear as a late packet


class GcPauses:
    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.long = [0, 0, 0]  # pauses of LONG_MS or more
        self.max_ms = [0.0, 0.0, 0.0]
        self._started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000
        generation = min(int(info.get("generation", 0)), 2)
        self.count[generation] += 1
        self.long[generation] += ms >= LONG_MS
        self.max_ms[generation] = max(self.max_ms[generation], ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            f"gen{g}": {
                "count": self.count[g],
                f"over_{LONG_MS:g}ms": self.long[g],
                "max_ms": round(self.max_ms[g], 2),
            }
            for g in range(3)
        }
