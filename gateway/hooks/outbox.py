"""The durable outbox of call events: one file per event, in order, until a 2xx.

Files are ``<seq>_<id>.json`` holding the exact body posted; ``seq`` (12 digits, growing)
orders them across restarts. Each is written as durable.py writes a call record: to a
temporary file, fsynced, renamed, the directory fsynced, before its first attempt. A SIGKILL
or a power cut after that loses nothing; one before it loses only events whose attempt had
not started. The file is removed after a 2xx (a crash between the two means one more
delivery, which the stable id makes harmless).

`Pending` is the queue's logic without I/O (time passed in): which event to attempt next,
the back-off, the bound. The file functions below it block and run in worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog

from ..durable import write_atomically
from .events import Event, parse

log = structlog.get_logger("gateway")

FIRST_RETRY_S = 1.0
MAX_FILE_BYTES = 16 * 1024 * 1024  # far above any event we write; a larger file is not ours
_NAME = re.compile(r"^(\d{12})_([A-Za-z0-9_-]{1,64})\.json$")


def backoff_s(attempts: int, cap_s: float, rand: float) -> float:
    """The wait after the `attempts`-th failed attempt: 1, 2, 4 ... s capped at `cap_s`, each
    drawn in [half, whole] of that (`rand` in [0, 1)) so that many events do not retry in
    step."""
    ceiling = min(cap_s, FIRST_RETRY_S * 2 ** min(attempts - 1, 30))
    return ceiling * (0.5 + rand / 2)


@dataclass(eq=False, slots=True)
class Entry:
    seq: int
    event: Event
    written: bool = False  # on disk (or its write failed: then it is sent from memory)
    # The body is kept in memory only until it is on disk: 10,000 pending events with long
    # transcripts would otherwise hold gigabytes. An attempt reads it back from the file.
    in_memory: bool = True
    attempts: int = 0
    next_at: float = 0.0  # monotonic time of the next attempt
    in_flight: bool = False

    @property
    def name(self) -> str:
        return f"{self.seq:012d}_{self.event.id}.json"


@dataclass
class Pending:
    """The events not yet delivered, oldest first. An event is attempted only once no older
    event of the same call waits (call.started before call.ended), and not before its
    back-off has passed; events of other calls go on meanwhile."""

    max_pending: int
    retry_max_s: float
    entries: OrderedDict[int, Entry] = field(default_factory=OrderedDict)
    next_seq: int = 1

    def __len__(self) -> int:
        return len(self.entries)

    def add(
        self, event: Event, written: bool = False, seq: int | None = None
    ) -> tuple[Entry, list[Entry]]:
        """Queue `event` (`seq`: its number from an earlier run); returns its entry and the
        oldest entries dropped to stay within the bound (it may be among them)."""
        seq = self.next_seq if seq is None else seq
        self.next_seq = max(self.next_seq, seq + 1)
        entry = self.entries[seq] = Entry(seq, event, written=written)
        dropped = []
        while len(self.entries) > self.max_pending:
            dropped.append(self.entries.popitem(last=False)[1])
        return entry, dropped

    def _ready(self) -> Iterator[Entry]:
        """Entries that are first of their call, written, and not being attempted."""
        seen: set[str] = set()
        for entry in self.entries.values():
            call = entry.event.call_id
            if call in seen:
                continue
            seen.add(call)
            if entry.written and not entry.in_flight:
                yield entry

    def take(self, now: float) -> Entry | None:
        """The next entry to attempt now (marked in flight), if any."""
        for entry in self._ready():
            if entry.next_at <= now:
                entry.in_flight = True
                return entry
        return None

    def next_wake(self) -> float | None:
        """When the earliest waiting entry may be attempted (None: nothing waits)."""
        return min((e.next_at for e in self._ready()), default=None)

    def delivered(self, entry: Entry) -> bool:
        """A 2xx: the entry leaves the queue. False if it had been dropped meanwhile."""
        entry.in_flight = False
        return self.entries.pop(entry.seq, None) is not None

    def failed(self, entry: Entry, now: float, rand: float) -> float:
        """An attempt failed: the entry waits its back-off. Returns the wait."""
        entry.in_flight = False
        entry.attempts += 1
        wait = backoff_s(entry.attempts, self.retry_max_s, rand)
        entry.next_at = now + wait
        return wait


# --- files (blocking: run in worker threads) ----------------------------------------------------


def open_dir(directory: Path) -> int:
    """Create the outbox directory and lock it for this process: the descriptor of its lock
    (closing it releases the lock; so does the kernel when the process dies). OSError, with a
    reason, when the directory cannot hold files or another gateway has it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(errno.EBUSY, "another gateway process uses this outbox") from None
    return fd


def write(directory: Path, entry: Entry) -> None:
    write_atomically(directory / entry.name, entry.event.body)


def forget_body(entry: Entry) -> None:
    """The body is on disk: memory keeps only what orders and names the event."""
    entry.event = replace(entry.event, body=b"")
    entry.in_memory = False


def read_body(directory: Path, entry: Entry) -> bytes:
    """The body to post, from memory or from its file (OSError when the file is gone)."""
    if entry.in_memory:
        return entry.event.body
    with open(directory / entry.name, "rb") as file:
        return file.read(MAX_FILE_BYTES + 1)


def remove(directory: Path, entry: Entry) -> None:
    """Delete a delivered or dropped event's file (already gone: nothing to do)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / entry.name)


def load(directory: Path, on_bad: Callable[[Path, str], None]) -> list[tuple[int, Event]]:
    """The events left by an earlier run, oldest first, without their bodies (each file is
    read again when it is sent). A leftover ``.tmp`` (killed while
    writing: its event had not been attempted) is removed; a file that is not an event of
    ours is renamed ``.bad`` and reported, never sent."""
    found: list[tuple[int, Event]] = []
    for path in directory.iterdir():
        if path.name.endswith(".json.tmp"):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        match = _NAME.match(path.name)
        if match is None:
            continue
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError("too large")
            event = parse(path.read_bytes())
            if event.id != match.group(2):
                raise ValueError("id differs from the file name")
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                path.rename(path.with_name(path.name + ".bad"))
            on_bad(path, str(exc))
            continue
        found.append((int(match.group(1)), replace(event, body=b"")))  # read again to send
    found.sort(key=lambda item: item[0])
    return found
