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
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from .durable import errno_name, write_atomically

if TYPE_CHECKING:
    from aiosipua import IncomingCall

log = structlog.get_logger("gateway")


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
    # Each transfer (blind or warm): target, destination, mode, outcome, ok, detail.
    transfers: list[dict[str, Any]] = field(default_factory=list)
    rtp: dict[str, Any] = field(default_factory=dict)
    amd: dict[str, Any] | None = None  # answering-machine detection: result, cause, voicemail
    recording: str | None = None
    transcript: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # from the decision webhook
    direction: Literal["inbound", "outbound"] = "inbound"  # outbound: placed by POST /v1/calls

    @classmethod
    def of_invite(cls, call_id: str, sip: IncomingCall, dialed: str, **fields: Any) -> CallRecord:
        """The record of a call as its INVITE says (answered or refused: one way to build it)."""
        source = f"{sip.source_addr[0]}:{sip.source_addr[1]}"
        return cls(call_id, sip.call_id, sip.caller, sip.callee, source, dialed=dialed, **fields)

    def write(self, directory: Path) -> Awaitable[None]:
        """Write `<call_id>.json` as the record is now, in a worker thread: atomically (a
        reader never sees half a record) and durably. Raises OSError (ENOSPC...) with no
        temporary file left behind."""
        data = json.dumps(asdict(self), indent=1, default=str).encode()
        return asyncio.to_thread(write_atomically, directory / f"{self.call_id}.json", data)


class RecordWriter:
    """Writes the records into records.calls_dir (None: no records are kept).

    A write that fails (full disk) is logged and counted (`on_failure`), never raised: the
    call goes on. Writes in the background are kept in `pending` until they are done.
    """

    def __init__(self, directory: Path | None, on_failure: Callable[[], None]) -> None:
        self.directory = directory
        self._on_failure = on_failure
        self.pending: set[asyncio.Task[None]] = set()

    def opening(self, record: CallRecord, clog: Any) -> asyncio.Task[None] | None:
        """The answered call's record, state in_progress, written in the background (the
        media starts at once): a call cut short by a killed process still has its record."""
        if self.directory is None:
            return None
        record.state = "in_progress"
        return asyncio.get_running_loop().create_task(
            self.save(record, clog), name=f"record-{record.call_id}"
        )

    def refusal(self, record: CallRecord) -> None:
        """A refused call's only record, written in the background."""
        if self.directory is None:
            return
        task = asyncio.get_running_loop().create_task(self.save(record, log))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def final(
        self,
        record: CallRecord,
        reason: str,
        opening: asyncio.Task[None] | None,
        clog: Any,
        **fields: Any,
    ) -> None:
        """The call's final record, state completed, once its in_progress version (`opening`)
        is on disk: never the other way round. `fields` are the record's last values (set
        even with no calls_dir: call.ended carries them)."""
        if opening is not None:
            await asyncio.wait({opening})
        record.state = "completed"
        record.ended_at = now_iso()
        record.end_reason = reason
        for name, value in fields.items():
            setattr(record, name, value)
        if self.directory is not None:  # without one the record is only in call.ended
            await self.save(record, clog)

    def save(self, record: CallRecord, clog: Any) -> Awaitable[None]:
        """Write the record as it is now (taken at this call, written later)."""
        if self.directory is None:
            raise ValueError("no records.calls_dir")
        return self._saved(record.write(self.directory), record.state, self.directory, clog)

    async def _saved(
        self, writing: Awaitable[None], state: str, directory: Path, clog: Any
    ) -> None:
        try:
            await writing
        except OSError as exc:
            clog.error(
                "call.record_failed",
                directory=str(directory),
                state=state,
                errno=errno_name(exc),
                error=exc.strerror,
            )
            self._on_failure()
