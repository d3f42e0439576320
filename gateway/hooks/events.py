"""The call events the gateway posts (``hooks.events``): what each one carries, as plain data.

A body is ``{id, type, timestamp, call_id, data}``. ``id`` is chosen once, when the event
happens, and is also the ``webhook-id`` header of every attempt: a receiver that has seen it
already can drop the repeat (delivery is at least once). The body is built once and stored as
it is posted, so a retry, even after a restart, sends the very same bytes.

Which events a call emits (README, "Call events"):

* ``call.started``: the INVITE passed the door (allow_from, digest, limits) and is being set
  up. A call refused at the door (403, 401, 503 when full or draining) emits nothing: it never
  became a call, and anyone who can send an INVITE could otherwise fill the outbox and push
  out the events of real calls. Such refusals are in the log, the metrics and calls_dir.
* ``call.answered``: the 200 OK was sent.
* ``call.amd``: answering-machine detection decided (``result`` human, machine or unknown,
  ``ms`` after the answer, ``cause``, ``mode``); the voicemail left is in the call record.
* ``call.transferred``: a transfer's outcome, blind or warm (``target``, ``destination``,
  ``mode``, ``outcome``: joined_by_refer, bridged, target_busy, no_answer, declined or
  failed; ``ok``, ``detail``).
* ``call.tool``: each tool call, with its arguments and outcome.
* ``call.ended``: always after ``call.started``, answered or not (a setup failure has
  ``record.sip_status``): the call record as written to records.calls_dir, and the transcript.

Every event's data has ``metadata``: what the decision webhook (``hooks.call_incoming``)
answered for this call, ``{}`` before it answered or without one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from .signing import new_message_id

MAX_FIELD_CHARS = 4096  # a tool's arguments or output, as the model or a webhook made them
MAX_TRANSCRIPT_CHARS = 256 * 1024  # the turns' text in call.ended; later turns are left out


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    call_id: str
    body: bytes  # exactly what is posted, every time


def build(
    kind: str, call_id: str, data: Mapping[str, Any], now: float, event_id: str | None = None
) -> Event:
    """One event at wall-clock time `now` (seconds since the epoch)."""
    event_id = event_id or new_message_id()
    timestamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    doc = {"id": event_id, "type": kind, "timestamp": timestamp, "call_id": call_id}
    body = json.dumps(doc | {"data": dict(data)}, ensure_ascii=False, default=str)
    return Event(event_id, kind, call_id, body.encode())


def parse(body: bytes) -> Event:
    """An event read back from the outbox; ValueError when it is not one of ours."""
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("not an object")
    fields = [doc.get(k) for k in ("id", "type", "call_id")]
    if not all(isinstance(f, str) and f for f in fields):
        raise ValueError("id, type or call_id missing")
    return Event(fields[0], fields[1], fields[2], body)


def clip(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def tool_data(name: str, arguments: str, output: str, ms: int) -> dict[str, Any]:
    """call.tool: the outcome is ``ok`` unless the output says ``{"ok": false, ...}``."""
    ok = True
    try:
        parsed = json.loads(output)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("ok") is False:
        ok = False
    return {
        "name": name,
        "arguments": clip(arguments),
        "output": clip(output),
        "ok": ok,
        "ms": ms,
    }


def transcript_data(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The turns for call.ended, their text bounded in total (``truncated`` says so)."""
    kept: list[dict[str, Any]] = []
    total = 0
    for turn in turns:
        total += len(str(turn.get("text", "")))
        if total > MAX_TRANSCRIPT_CHARS:
            return {"turns": kept, "truncated": True}
        kept.append(turn)
    return {"turns": kept, "truncated": False}


Emit = Callable[[str, Mapping[str, Any]], None]


def no_events(kind: str, data: Mapping[str, Any]) -> None:
    """The emitter of a gateway without hooks.events."""


def started_data(record: Any, info: Any, transport: str) -> dict[str, Any]:
    """call.started: who calls whom, from where (a CallRecord and routing's CallInfo)."""
    return {
        "caller": record.caller,
        "caller_name": info.caller_name,
        "callee": record.callee,
        "dialed": info.dialed,
        "source": record.source,
        "transport": transport,
        "received_at": record.received_at,
        "direction": record.direction,
    }


def answered_data(record: Any) -> dict[str, Any]:
    """call.answered: when, with which profile and codec."""
    return {
        "answered_at": record.answered_at,
        "profile": record.profile,
        "codec": record.codec,
        "direction": record.direction,
    }


def ended_data(reason: str, record: Any, transcript: Any) -> dict[str, Any]:
    """call.ended: the record as written (its final values) and the turns as heard."""
    turns = transcript.turns if transcript is not None else []
    return {"reason": reason, "record": asdict(record), "transcript": transcript_data(turns)}


def with_metadata(emit: Emit, metadata: Callable[[], Mapping[str, Any]]) -> Emit:
    """A call's emitter whose events carry the decision webhook's metadata as it is now."""

    def send(kind: str, data: Mapping[str, Any]) -> None:
        emit(kind, {**data, "metadata": dict(metadata())})

    return send
