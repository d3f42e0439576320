"""One JSON record per call, written however the call ended (rejected, hung up, dropped).

It is what billing, QA and support look at first: who called which number, which profile
answered, how it ended and why, how long it lasted, what it cost in tokens, which tools ran.

An answered call's record is written twice: at the answer with ``state: in_progress`` (so a
call cut short by a killed process or a power cut still has one), and at the end, complete,
with ``state: completed``. A refused call's record is written once, completed. Each write
replaces the file whole and is on disk when it returns (see `durable.write_atomically`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .durable import write_atomically


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class CallRecord:
    call_id: str
    sip_call_id: str
    caller: str
    callee: str
    source: str
    state: Literal["in_progress", "completed"] = "completed"
    received_at: str = field(default_factory=now_iso)
    dialed: str = ""
    profile: str | None = None
    codec: str | None = None
    answered_at: str | None = None
    ended_at: str | None = None
    end_reason: str = ""
    sip_status: int | None = None  # the final response when the call was not answered
    setup_ms: int = 0
    duration_s: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    rtp: dict[str, Any] = field(default_factory=dict)
    recording: str | None = None
    transcript: str | None = None

    def write(self, directory: Path) -> Awaitable[None]:
        """Write `<call_id>.json` as the record is now, in a worker thread: atomically (a
        reader never sees half a record) and durably. Raises OSError (ENOSPC...) with no
        temporary file left behind."""
        data = json.dumps(asdict(self), indent=1, default=str).encode()
        return asyncio.to_thread(write_atomically, directory / f"{self.call_id}.json", data)
