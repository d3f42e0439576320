"""The console's hub: what the calls do, pushed to every open console page (server-sent events).

Three sources, all free while no console is open (one truth test each):

* the call events the calls emit (``call.started`` ... ``call.ended``, as for hooks.events),
  whether or not hooks.events is configured (:meth:`Hub.tee` wraps each call's emitter);
* the transcript's turns as they are written (:meth:`Hub.turn`);
* the log lines that tell what happens on a call (barge-ins, keys, reconnects, rollovers,
  guards, the API's actions): :func:`log_tap`, a structlog processor.

And, while at least one page is open, a snapshot of the calls' live figures a few times a
second (``stats``). Every page has a bounded queue: a page that does not keep up is dropped
(its stream ends; EventSource reconnects and starts again from a fresh list), never waited for.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from ..hooks.events import Emit

log = structlog.get_logger("gateway")

SNAPSHOT_HZ = 4  # a call's page (its meters)
LIST_EVERY = 2  # the list of every call: 2 Hz (its cost grows with the calls)
MAX_QUEUED = 256  # messages waiting for one page; beyond, the page is dropped
MAX_SUBSCRIBERS = 32
# The log lines a console shows as they happen (the rest stays in the log; tool calls come
# as call.tool events).
LOG_EVENTS = frozenset(
    {
        "call.barge_in",
        "call.local_barge_in_confirmed",
        "call.dtmf",
        "call.dtmf_to_model",
        "call.transfer",
        "call.guard",
        "call.rtp_timeout",
        "rtp.flood",
        "realtime.reconnected",
        "realtime.reconnect_failed",
        "realtime.rolled_over",
        "realtime.rollover_failed",
        "realtime.stalled",
        "api.hangup",
        "api.say",
        "api.transfer",
        "api.dtmf",
        "console.listen_started",
        "console.listen_stopped",
    }
)
_SKIP_FIELDS = frozenset({"event", "call_id", "sip_call_id", "level", "timestamp", "logger"})
MAX_FIELD_CHARS = 2000

StatsSource = Callable[[str | None], list[dict[str, Any]]]  # one call's, or every call's


class Subscriber:
    """One open page: its queue of SSE messages and the call it follows (None: all)."""

    def __init__(self, call_id: str | None) -> None:
        self.call_id = call_id
        self.queue: deque[bytes] = deque()
        self.ready = asyncio.Event()
        self.dropped = False

    def put(self, message: bytes) -> None:
        if self.dropped:
            return
        if len(self.queue) >= MAX_QUEUED:
            self.dropped = True  # a slow page: it starts again, the calls never wait
            self.queue.clear()
        else:
            self.queue.append(message)
        self.ready.set()


class Hub:
    """Fans the calls' events out to the open console pages."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.stats_source: StatsSource = lambda call_id: []
        self.dropped = 0  # pages dropped for being slow
        self.on_drop: Callable[[], None] = lambda: None
        self._snapshots: asyncio.Task[None] | None = None

    # --- pages --------------------------------------------------------------------------------

    def subscribe(self, call_id: str | None) -> Subscriber | None:
        """A new page's subscription; None when too many are open."""
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            return None
        sub = Subscriber(call_id)
        self.subscribers.add(sub)
        _LISTENING.add(self)
        if self._snapshots is None:
            self._snapshots = asyncio.get_running_loop().create_task(
                self._snapshot_loop(), name="console-snapshots"
            )
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if sub.dropped:
            self.dropped += 1
            self.on_drop()
        if not self.subscribers:
            _LISTENING.discard(self)
            if self._snapshots is not None:
                self._snapshots.cancel()
                self._snapshots = None

    def close(self) -> None:
        """The server stops: every page's stream ends (not counted as dropped)."""
        for sub in list(self.subscribers):
            self.unsubscribe(sub)
            sub.dropped = True
            sub.ready.set()

    # --- what the calls say -------------------------------------------------------------------

    def tee(self, call_id: str, emit: Emit) -> Emit:
        """A call's emitter that also tells the open pages (hooks.events or not)."""

        def send(kind: str, data: Mapping[str, Any]) -> None:
            emit(kind, data)
            if self.subscribers:
                self.publish("event", call_id, {"type": kind, "data": dict(data)})

        return send

    def turn(self, call_id: str, line: Mapping[str, Any]) -> None:
        """A transcript turn, as written to the call's transcript."""
        if self.subscribers:
            self.publish("turn", call_id, dict(line))

    def publish(self, kind: str, call_id: str, data: Mapping[str, Any]) -> None:
        message = sse(kind, {"call_id": call_id, **data})
        for sub in self.subscribers:
            if sub.call_id is None or sub.call_id == call_id:
                sub.put(message)

    async def _snapshot_loop(self) -> None:
        """The calls' live figures, while pages are open: a page on one call gets its call's
        SNAPSHOT_HZ times a second (its meters), a page on every call the whole list every
        LIST_EVERY-th time (serialised once for all such pages)."""
        tick = 0
        while True:
            await asyncio.sleep(1 / SNAPSHOT_HZ)
            tick += 1
            try:
                self._snapshot(tick % LIST_EVERY == 0)
            except Exception:  # a call torn down under us: next time
                log.exception("console.snapshot_failed")

    def _snapshot(self, with_list: bool) -> None:
        everything: bytes | None = None
        for sub in list(self.subscribers):
            if sub.call_id is not None:
                sub.put(sse("stats", {"calls": self.stats_source(sub.call_id)}))
            elif with_list:
                everything = everything or sse("stats", {"calls": self.stats_source(None)})
                sub.put(everything)


def sse(kind: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event (the JSON holds no newline: one data line)."""
    body = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    return f"event: {kind}\ndata: {body}\n\n".encode()


# Hubs with an open page: the log tap does nothing (one truth test) while this is empty.
_LISTENING: set[Hub] = set()


def log_tap(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: a call's notable log lines to the open console pages."""
    if not _LISTENING:
        return event_dict
    name, call_id = event_dict.get("event"), event_dict.get("call_id")
    if name in LOG_EVENTS and isinstance(call_id, str):
        fields = {key: _clip(value) for key, value in event_dict.items() if key not in _SKIP_FIELDS}
        for hub in list(_LISTENING):
            hub.publish("log", call_id, {"name": name, "fields": fields})
    return event_dict


def _clip(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value[:MAX_FIELD_CHARS] if isinstance(value, str) else value
    return str(value)[:MAX_FIELD_CHARS]
