"""Posting call events at least once: the asyncio side of the outbox (outbox.py).

A call only appends (`emit` returns at once): one writer task puts each event on disk in a
worker thread, in order, and only then may a sender attempt it. A few senders post events of
different calls side by side; one call's events go one after the other. An attempt is an
aiohttp POST that follows no redirect, reads at most 64 KiB of the answer and gives up after
``timeout_s``; anything but a 2xx is retried after a back-off, for as long as the event is
in the outbox. On SIGTERM the writes in hand are finished and the rest stays on disk for the
next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from .. import __version__
from ..config import GatewayConfig, hook_secret
from ..config.hooks import EventsHook
from ..durable import errno_name
from ..metrics import EventMetrics
from ..startup import StartupError
from . import outbox
from .events import Emit, build
from .outbox import Entry, Pending
from .signing import Signer, unsigned_headers

log = structlog.get_logger("gateway")

SENDERS = 4  # attempts in flight at once (each for a different call)
MAX_ANSWER_BYTES = 64 * 1024
CLOSE_WRITES_S = 5.0  # on stop, how long writes in hand may take


def outbox_dir(configured: Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    """hooks.events.outbox_dir, or its default: under systemd's StateDirectory= (the first
    one), else in the working directory."""
    if configured is not None:
        return configured
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) / "events" if state else Path("events-outbox")


class EventDelivery:
    def __init__(
        self,
        cfg: EventsHook,
        directory: Path,
        metrics: EventMetrics,
        secret: str | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.cfg = cfg
        self.directory = directory
        self.metrics = metrics
        self._signer = Signer(secret) if secret else None
        self._types = frozenset(cfg.events)
        self._clock, self._wall, self._rand = clock, wall, rand
        self.pending = Pending(cfg.max_pending, cfg.retry_max_s)
        self._file_ops: deque[tuple[str, Entry]] = deque()
        self._ops_changed = asyncio.Event()
        self._ops_done = asyncio.Event()  # the writer has nothing in hand
        self._ops_done.set()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # an event delivered, or the writer idle
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None
        self.closed = False
        self._lock: int | None = None  # the outbox directory's lock, held while running

    async def start(self) -> None:
        """Create the directory (OSError when it cannot hold files), take up what an earlier
        run left, and start writing and sending."""
        self._lock = await asyncio.to_thread(outbox.open_dir, self.directory)
        left = await asyncio.to_thread(outbox.load, self.directory, _bad_file)
        for seq, event in left:
            entry, dropped = self.pending.add(event, written=True, seq=seq)
            entry.in_memory = False
            self._drop(dropped)
        if left:
            log.info("events.outbox_loaded", pending=len(self.pending), dir=str(self.directory))
        self.metrics.pending.set_function(lambda: len(self.pending))
        self._http = aiohttp.ClientSession(
            headers={"User-Agent": f"sip-realtime-gateway/{__version__}"},
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
        )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._writer(), name="events-writer"))
        for n in range(SENDERS):
            self._tasks.append(loop.create_task(self._sender(), name=f"events-sender-{n}"))

    def emitter(self, call_id: str) -> Emit:
        """What a call is given: emit(type, data), which never blocks and never raises."""
        return partial(self.emit, call_id=call_id)

    def emit(self, kind: str, data: Mapping[str, Any], *, call_id: str) -> None:
        if kind not in self._types or self.closed:
            return
        try:
            event = build(kind, call_id, data, self._wall())
        except (TypeError, ValueError) as exc:  # a value JSON cannot hold: a bug, not the call's
            log.error("events.unserialisable", type=kind, error=str(exc))
            return
        entry, dropped = self.pending.add(event)
        self._file_ops.append(("write", entry))
        self._drop(dropped)
        self._ops_changed.set()

    def _drop(self, dropped: list[Entry]) -> None:
        for entry in dropped:
            self.metrics.dropped.inc()
            log.warning(
                "events.dropped", id=entry.event.id, type=entry.event.type, reason="max_pending"
            )
            self._file_ops.append(("remove", entry))
        if dropped:
            self._ops_changed.set()

    # --- files ----------------------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            while not self._file_ops:
                self._ops_done.set()
                self._progress.set()
                self._ops_changed.clear()
                await self._ops_changed.wait()
            self._ops_done.clear()
            op, entry = self._file_ops.popleft()
            if op == "write":
                if entry.seq not in self.pending.entries:  # dropped before it was written
                    continue
                await self._write(entry)
                log.debug("events.queued", id=entry.event.id, type=entry.event.type)
                self._wake.set()
            else:
                await self._file(outbox.remove, entry)

    async def _write(self, entry: Entry) -> None:
        try:
            await asyncio.to_thread(outbox.write, self.directory, entry)
        except OSError as exc:  # full disk: sent from memory, lost if the process dies first
            log.error(
                "events.outbox_write_failed",
                id=entry.event.id,
                errno=errno_name(exc),
                error=exc.strerror,
            )
        else:
            outbox.forget_body(entry)
        entry.written = True

    async def _file(self, op: Callable[[Path, Entry], None], entry: Entry) -> None:
        try:
            await asyncio.to_thread(op, self.directory, entry)
        except OSError as exc:
            log.error("events.outbox_remove_failed", id=entry.event.id, errno=errno_name(exc))

    # --- sending --------------------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            entry = self.pending.take(self._clock())
            if entry is None:
                self._wake.clear()
                wake = self.pending.next_wake()
                timeout = None if wake is None else max(0.0, wake - self._clock())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                continue
            await self._attempt(entry)

    async def _attempt(self, entry: Entry) -> None:
        try:
            body = await asyncio.to_thread(outbox.read_body, self.directory, entry)
        except OSError as exc:  # removed by hand: nothing left to send
            log.error("events.outbox_read_failed", id=entry.event.id, errno=errno_name(exc))
            if self.pending.delivered(entry):  # (not delivered: it only leaves the queue)
                self.metrics.dropped.inc()
            self._wake.set()
            return
        if entry.attempts:
            self.metrics.retried.inc()
        ok, outcome = await self.post(entry, body)
        if ok:
            if self.pending.delivered(entry):
                self.metrics.was_delivered(entry.event.type)
                self._file_ops.append(("remove", entry))
                self._ops_changed.set()
            log.debug("events.delivered", id=entry.event.id, type=entry.event.type)
            self._wake.set()  # the call's next event may go now
            return
        self.metrics.failed.inc()
        wait = self.pending.failed(entry, self._clock(), self._rand())
        # A receiver down for hours: each event's 1st, 2nd, 4th, 8th ... failure is a warning.
        attempts = entry.attempts
        loud = attempts & (attempts - 1) == 0
        (log.warning if loud else log.debug)(
            "events.attempt_failed",
            id=entry.event.id,
            type=entry.event.type,
            outcome=outcome,
            attempts=entry.attempts,
            retry_in_s=round(wait, 2),
        )

    async def post(self, entry: Entry, body: bytes) -> tuple[bool, str]:
        """One attempt with the stored `body`: (2xx?, the status or the error's name)."""
        assert self._http is not None
        event = entry.event
        if self._signer is not None:
            headers = self._signer.headers(event.id, body, self._wall())
        else:
            headers = unsigned_headers(event.id, self._wall())
        headers["Content-Type"] = "application/json"
        try:
            async with self._http.post(
                self.cfg.url, data=body, headers=headers, allow_redirects=False
            ) as answer:
                await answer.content.read(MAX_ANSWER_BYTES)
                return 200 <= answer.status < 300, f"http_{answer.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return False, type(exc).__name__

    async def wait_empty(self) -> None:
        """Until every event is delivered and its file removed (tests; a caller bounds it)."""
        while len(self.pending) or not self._ops_done.is_set() or self._file_ops:
            self._progress.clear()
            await self._progress.wait()

    # --- stopping -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish the writes in hand (bounded), stop sending; what is pending stays on disk."""
        self.closed = True
        if self._tasks and (self._file_ops or not self._ops_done.is_set()):
            self._ops_done.clear()  # set again by the writer once the deque is empty
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WRITES_S):
                    await self._ops_done.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        log.info("events.stopped", pending=len(self.pending))


def _bad_file(path: Path, reason: str) -> None:
    log.error("events.outbox_bad_file", path=str(path), reason=reason)


async def start_events(cfg: GatewayConfig, metrics: EventMetrics) -> EventDelivery | None:
    """hooks.events delivering, when configured: the outbox directory must hold files;
    StartupError when it cannot."""
    hook = cfg.hooks.events
    if hook is None:
        return None
    directory = outbox_dir(hook.outbox_dir)
    delivery = EventDelivery(hook, directory, metrics, hook_secret(hook.secret_env))
    try:
        await delivery.start()
    except OSError as exc:
        raise StartupError(
            f"hooks.events.outbox_dir: cannot use {directory.resolve()}: {exc.strerror or exc}"
        ) from None
    return delivery
