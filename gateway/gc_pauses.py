"""The garbage collector's pauses: timed, and the full ones kept away from calls.

A collection stops the one event loop that paces every call's RTP: a full (generation 2)
collection over the objects of 200 calls (~80,000) takes 60-70 ms, a gap every caller
hears. The pauses are counted per generation for /debug/state, so a load run can tell a GC
pause from any other stall.

A call frees its own objects when it ends, by reference counting (``bridge/setup.py``'s
``_let_go`` cuts the cycles among them; before it, each call left ~270 objects for the next
full collection: 81,000 after 300 calls, 167 ms to collect). What is left is asyncio's: a
closed socket transport refers to itself (~24 objects a call). So full collections find next
to nothing, and CPython's own trigger (25 % more long-lived objects than at the last one:
every ~50 calls at 200 concurrent) buys nothing for its pauses. ``FullCollections`` turns
that trigger off and collects in full when the gateway has no call at all, and otherwise once
every ``every_calls`` ended calls, which bounds what cyclic garbage could pile up on a gateway
that is never idle.

The middle generation goes the same way. What the young collections find alive is each
call's suspended tasks (the coroutines, futures and timers of the awaits that each of the
model's deltas renews: about 50 objects a call, 15,000 at 300 calls), and all of it outlives
the collection, so each generation-1 collection scanned two young generations of them for
nothing: 8-14 ms at 300 calls, a late packet for every call (gap max 34-35 ms against 27 with
no collector at all). Only generation 0 is collected automatically now (3-8 ms at 300
calls, every few seconds); what survives it waits for the full collections, as generation 2
always did.
"""

from __future__ import annotations

import gc
import time
from typing import Any

LONG_MS = 10.0  # a pause the caller may hear as a late packet
SLOT_MS = 2.0  # a pause as long as a pacer slot (pacer.py): some calls' packets wait


class GcPauses:
    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.long = [0, 0, 0]  # pauses of LONG_MS or more
        self.slot = [0, 0, 0]  # pauses of SLOT_MS or more
        self.max_ms = [0.0, 0.0, 0.0]
        self.total_ms = [0.0, 0.0, 0.0]  # the collector's share of the loop's time
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
        self.slot[generation] += ms >= SLOT_MS
        self.max_ms[generation] = max(self.max_ms[generation], ms)
        self.total_ms[generation] += ms

    def as_dict(self) -> dict[str, Any]:
        return {
            f"gen{g}": {
                "count": self.count[g],
                f"over_{LONG_MS:g}ms": self.long[g],
                f"over_{SLOT_MS:g}ms": self.slot[g],
                "max_ms": round(self.max_ms[g], 2),
                "total_ms": round(self.total_ms[g], 1),
            }
            for g in range(3)
        }


NEVER = 2**31 - 1  # a generation-2 threshold that automatic collection never reaches


class FullCollections:
    """Full collections when no call can hear them, or once every ``every_calls`` calls."""

    def __init__(self, every_calls: int = 2000) -> None:
        self.every_calls = every_calls
        self.calls_since = 0  # calls ended since the last full collection
        self.last_calls = 0  # calls that ended before the last full collection
        self.last_found = 0  # unreachable objects it found: cyclic garbage of those calls
        self._threshold: tuple[int, int, int] | None = None

    def as_dict(self) -> dict[str, int]:
        return {
            "calls_since": self.calls_since,
            "last_after_calls": self.last_calls,
            "last_found_objects": self.last_found,
        }

    def install(self) -> None:
        if self._threshold is None:
            self._threshold = gc.get_threshold()
            gc.set_threshold(self._threshold[0], NEVER, NEVER)

    def remove(self) -> None:
        if self._threshold is not None:
            gc.set_threshold(*self._threshold)
            self._threshold = None

    def call_ended(self, calls_left: int) -> None:
        self.calls_since += 1
        if calls_left == 0 or self.calls_since >= self.every_calls:
            self.last_found = gc.collect()
            self.last_calls = self.calls_since
            self.calls_since = 0
