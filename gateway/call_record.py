"""One JSON record per call, written however the call ended (rejected, hung up, dropped).

It is what billing, QA and support look at first: who called which number, which profile
answered, how it ended and why, how long it lasted, what it cost in tokens, which tools ran.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class CallRecord:
    call_id: str
    sip_call_id: str
    caller: str
    callee: str
    source: str
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

    async def write(self, directory: Path) -> Path:
        """Write `<call_id>.json` atomically (a reader never sees half a record)."""
        path = directory / f"{self.call_id}.json"
        text = json.dumps(asdict(self), indent=1, default=str)
        await asyncio.to_thread(_write_atomically, path, text)
        return path


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
