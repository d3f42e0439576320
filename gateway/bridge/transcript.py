"""One call's conversation as the caller heard it, as JSON lines.

Caller turns come from input transcription; agent turns from the output transcript, cut where
the caller interrupted. The cut is the call's one rule
(:func:`gateway.realtime.conversation.cut_text`, also used for the context replayed after a
reconnect): the share of the item's audio that was heard (``ItemAccount.heard_ms``, the same
figure the model gets in ``conversation.item.truncate``), snapped back to a word edge.

An agent turn is written when its audio has finished playing or was cut, since only then is
it known what was heard. Every line goes to the kernel at once, whole (`durable.AppendFile`),
so a call that ends abruptly (BYE mid-sentence, a dropped socket, a killed process) loses
nothing already said; :meth:`TranscriptLog.close` writes the turns still open and the end of
the call, and fsyncs the file in a worker thread. A full disk ends the file at its last whole
line (one log line, one metric), never the call.

Lines (one JSON object each)::

    {"type": "call", "event": "answered", "at": ISO-8601, "call_id": ..., ...}
    {"type": "turn", "role": "caller", "item_id": ..., "text": ..., "at": ..., "offset_s": ...}
    {"type": "turn", "role": "agent", "item_id": ..., "response_id": ..., "text": ...,
     "at": ..., "offset_s": ..., "heard_ms": ..., "audio_ms": ..., "interrupted": bool,
     "full_text": ... (only when interrupted)}
    {"type": "call", "event": "ended", "reason": ..., "duration_s": ..., "at": ...}

``at`` is when the turn started (caller: speech_started; agent: its first audio on the wire),
``offset_s`` the same time in seconds since the call was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..durable import AppendFile, errno_name
from ..realtime.conversation import cut_text
from .playback import ItemAccount

__all__ = ["TranscriptLog", "cut_text"]

MAX_OPEN_CALLER_TURNS = 16
# Agent turns waiting for their audio to end or their final text. Item ids come from the
# service: a turn that never completes (a service bug, or a hostile one sending transcripts
# of items it never plays) must not stay for the whole call. Beyond this many the oldest is
# written as it stands (as at the end of the call). A turn's text is cut at MAX_TURN_CHARS:
# 4,096 output tokens, an answer's limit, are about 16,000 characters.
MAX_OPEN_AGENT_TURNS = 16
MAX_TURN_CHARS = 32_768
RECENT_TURNS = 10  # kept in memory for the control API's view of a call
RECENT_TEXT_CHARS = 2000
MAX_KEPT_TURNS = 2_000  # kept in memory for call.ended (hooks.events); later ones only on disk
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(slots=True)
class _AgentTurn:
    text: str | None = None  # final transcript, once it arrived
    partial: str = ""  # transcript deltas so far
    played: ItemAccount | None = None


class TranscriptLog:
    """Writes one call's turns; with no file it only logs them."""

    def __init__(
        self,
        file: TextIO | AppendFile | None,
        log: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.file = file
        self.path: str | None = getattr(file, "name", None)
        self.log = log
        self.on_failure = on_failure
        self.clock = clock
        self._mono0 = clock()
        self._wall0 = wall()
        self._caller_started: dict[str, float] = {}
        self._agent: dict[str, _AgentTurn] = {}
        self.turns: list[dict[str, Any]] = []  # as written, for call.ended
        self.closed = False
        # The last turns, for whoever asks about the call in progress (the control API).
        self.recent: deque[dict[str, str]] = deque(maxlen=RECENT_TURNS)
        self.on_turn: Callable[[dict[str, Any]], None] | None = None  # the live console

    @classmethod
    def open(
        cls,
        directory: Path | None,
        call_id: str,
        log: Any,
        *,
        on_failure: Callable[[], None] = lambda: None,
        on_turn: Callable[[dict[str, Any]], None] | None = None,
        **call: Any,
    ) -> TranscriptLog:
        """Start the call's file in `directory` (None: log only) with its first line; a
        failure leaves no file and never ends a call. ``on_turn`` sees each turn written."""
        transcript = cls(None, log, on_failure=on_failure)
        transcript.on_turn = on_turn
        first = {"type": "call", "event": "answered", "at": transcript._iso(), "call_id": call_id}
        if directory is None:
            return transcript
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = directory / f"{stamp}_{_SAFE_NAME.sub('_', call_id)}.jsonl"
        try:
            transcript.file = AppendFile(path, _line(first | call))
        except OSError as exc:
            log.error(
                "call.transcript_unavailable",
                path=str(path),
                errno=errno_name(exc),
                error=exc.strerror,
            )
            on_failure()
        else:
            transcript.path = str(path)
            log.info("call.transcript_file", path=str(path))
        return transcript

    # --- events from the bridge ----------------------------------------------------------------

    def speech_started(self, item_id: str) -> None:
        self._caller_started.setdefault(item_id, self.clock())
        if len(self._caller_started) > MAX_OPEN_CALLER_TURNS:  # transcription is off
            del self._caller_started[next(iter(self._caller_started))]

    def caller_said(self, item_id: str, text: str) -> None:
        started = self._caller_started.pop(item_id, self.clock())
        self._turn("caller", item_id, text, started, {})

    def agent_delta(self, item_id: str, delta: str) -> None:
        turn = self._open_agent_turn(item_id)
        if len(turn.partial) < MAX_TURN_CHARS:
            turn.partial = (turn.partial + delta)[:MAX_TURN_CHARS]

    def agent_said(self, item_id: str, text: str) -> None:
        turn = self._open_agent_turn(item_id)
        turn.text = text[:MAX_TURN_CHARS]
        if turn.played is not None:
            self._agent_turn(item_id, turn)

    def agent_played(self, item: ItemAccount) -> None:
        """Playback of the item ended (in full or cut): what was heard is now known."""
        turn = self._open_agent_turn(item.key.item_id)
        turn.played = item
        if turn.text is not None:
            self._agent_turn(item.key.item_id, turn)

    @property
    def open_agent_turns(self) -> int:
        return len(self._agent)

    def _open_agent_turn(self, item_id: str) -> _AgentTurn:
        """The item's open turn; a new one writes the oldest beyond MAX_OPEN_AGENT_TURNS."""
        turn = self._agent.get(item_id)
        if turn is None:
            turn = self._agent[item_id] = _AgentTurn()
            if len(self._agent) > MAX_OPEN_AGENT_TURNS:
                oldest = next(iter(self._agent))
                self._write_open(oldest, self._agent[oldest])
        return turn

    def close(self, reason: str) -> None:
        """Write the turns still open (as heard so far) and the end of the call."""
        if self.closed:
            return
        for item_id, turn in list(self._agent.items()):
            self._write_open(item_id, turn)
        duration = round(self.clock() - self._mono0, 3)
        end = {"type": "call", "event": "ended", "reason": reason, "duration_s": duration}
        self._write(end | {"at": self._iso()})
        self.closed = True
        if isinstance(self.file, AppendFile):
            self._sync_and_close(self.file)
        elif self.file is not None:
            self.file.close()

    def _sync_and_close(self, file: AppendFile) -> None:
        """fsync and close in a worker thread: an fsync can take long, the event loop cannot."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a script, a test): here and now
            self._close_file(file)
            return
        loop.run_in_executor(None, self._close_file, file)

    def _close_file(self, file: AppendFile) -> None:
        try:
            file.close()
        except OSError as exc:  # the lines are in the file; only their durability is in doubt
            self._failed(exc)

    # --- lines ---------------------------------------------------------------------------------

    def _write_open(self, item_id: str, turn: _AgentTurn) -> None:
        """An agent turn written before it completed: the text so far, as heard so far."""
        if turn.text is None:
            turn.text = turn.partial
        self._agent_turn(item_id, turn)

    def _agent_turn(self, item_id: str, turn: _AgentTurn) -> None:
        del self._agent[item_id]
        full = turn.text or ""
        item = turn.played
        if item is None:  # text only, never played (the call ended first)
            unheard = {"heard_ms": 0, "audio_ms": 0, "interrupted": True, "full_text": full}
            self._turn("agent", item_id, "", self.clock(), unheard)
            return
        fields: dict[str, Any] = {
            "response_id": item.key.response_id,
            "heard_ms": item.heard_ms,
            "audio_ms": round(item.received_ms),
            "interrupted": item.interrupted,
        }
        text = full
        if item.interrupted:
            text = cut_text(full, item.heard_ms, item.received_ms)
            fields["full_text"] = full
        started = item.first_sent_at if item.first_sent_at is not None else item.finished_at
        self._turn("agent", item_id, text, started or self.clock(), fields)

    def _turn(
        self, role: str, item_id: str, text: str, started: float, fields: dict[str, Any]
    ) -> None:
        line = {
            "type": "turn",
            "role": role,
            "item_id": item_id,
            "text": text[:MAX_TURN_CHARS],
            "at": self._iso(started),
            "offset_s": round(started - self._mono0, 3),
            **fields,
        }
        self.log.info("call.transcript", role=role, text=line["text"], **fields)
        self.recent.append({"role": role, "text": text[:RECENT_TEXT_CHARS], "at": line["at"]})
        if len(self.turns) < MAX_KEPT_TURNS:
            self.turns.append(line)
        if self.on_turn is not None:
            self.on_turn(line)
        self._write(line)

    def _write(self, line: dict[str, Any]) -> None:
        if self.file is None or self.closed:
            return
        try:
            self.file.write(_line(line))
        except OSError as exc:  # disk full: the file ends with the last whole line
            file, self.file = self.file, None
            with contextlib.suppress(OSError):
                if isinstance(file, AppendFile):
                    file.close(sync=False)  # no fsync on the event loop
                else:
                    file.close()
            self._failed(exc)
        except ValueError as exc:  # file closed under us
            self.log.error("call.transcript_write_failed", error=str(exc))
            self.file = None

    def _failed(self, exc: OSError) -> None:
        self.log.error(
            "call.transcript_write_failed",
            path=self.path,
            errno=errno_name(exc),
            error=exc.strerror,
        )
        self.on_failure()

    def _iso(self, mono: float | None = None) -> str:
        t = self._wall0 + ((self.clock() if mono is None else mono) - self._mono0)
        return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _line(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False) + "\n"
