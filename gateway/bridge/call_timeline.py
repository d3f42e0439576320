"""A call's timeline, opened with the call and written beside its record at the end: the
asyncio side of :mod:`.timeline` (which records) and :mod:`.timeline_svg` (which draws)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..durable import errno_name
from ..media.codecs import Codec
from ..media.stream import RtpStream
from ..realtime.link import RealtimeLink
from .timeline import Timeline, write_files


def open_timeline(session: RealtimeLink, stream: RtpStream, codec: Codec) -> Timeline:
    """A timeline fed by the bridge, the stream (keys sent, packets lost) and the link
    (sessions replaced)."""
    reorder = stream.reorder
    timeline = Timeline(time.monotonic(), codec, lost=lambda: reorder.stats.lost)
    stream.keys.on_key = timeline.key_out
    session.on_replaced = timeline.session_replaced
    return timeline


async def write_timeline(
    timeline: Timeline, directory: Path, call_id: str, clog: Any, failed: Callable[[], None]
) -> None:
    """The picture beside the record, drawn and written in a worker thread; a failure is
    logged and counted (``failed``), never raised: the teardown goes on."""
    timeline.end(time.monotonic())  # (the bridge ended it, unless it never ran)
    try:
        data = timeline.snapshot(call_id)
        await asyncio.to_thread(write_files, directory, call_id, data)
    except OSError as exc:
        clog.error(
            "call.timeline_failed",
            directory=str(directory),
            errno=errno_name(exc),
            error=exc.strerror,
        )
        failed()
    except Exception:
        clog.exception("call.timeline_failed")
        failed()
