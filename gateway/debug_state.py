"""What the process holds now (/debug/state): flat in a soak run, or something leaks."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path
from typing import Any

from .bridge import playback
from .gc_pauses import FullCollections, GcPauses


def debug_state(
    calls: int,
    rtp_ports_in_use: int,
    gc_pauses: GcPauses,
    full_collections: FullCollections,
    collect: bool = False,
) -> dict[str, Any]:
    """``collect`` runs a full garbage collection first (tens of ms on the event loop: a
    debugging tool), so that what is counted is alive, not garbage not yet collected; what it
    found unreachable is ``gc_collected`` (an ended call should leave next to nothing)."""
    collected = gc.collect() if collect else None
    buffers = list(playback.LIVE)
    return {
        "calls": calls,
        "tasks": len(asyncio.all_tasks()),
        "fds": _count_fds(),
        "rss_mib": _rss_mib(),
        "rtp_ports_in_use": rtp_ports_in_use,
        "playback_buffers": len(buffers),
        "playback_buffered_s": round(sum(b.buffered_ms for b in buffers) / 1000, 3),
        "gc_objects": len(gc.get_objects()),
        "gc_collected": collected,
        "gc_pauses": gc_pauses.as_dict(),
        "gc_full_collections": full_collections.as_dict(),
    }


def _count_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return None


def _rss_mib() -> float | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
