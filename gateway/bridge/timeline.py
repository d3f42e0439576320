"""One call's timeline: who spoke, what was sent, what the service heard, when (sans-I/O).

The bridge feeds it what it already knows, at the one place it knows it: the caller's RTP
payloads (an energy gate per frame), each frame the pacer takes from playback (the agent's
audio as sent on RTP), the service's events (speech_started/stopped), the core's commands
(a truncate and its heard ms, a tool run and its output), keys both ways, the link's session
replacements, and the receiver's lost-packet count once a second. Times are monotonic seconds
passed in (the agent's frames read ``clock`` only when the agent starts or stops talking);
:meth:`Timeline.snapshot` gives them relative to the answer, for the picture
``<call_id>.timeline.svg`` (:mod:`.timeline_svg`), which carries them in its metadata.

Cheap and bounded: per frame a few comparisons (the caller's frame one ``bytes.translate``
and ``count`` too); spans are merged as they grow; each lane keeps at most ``MAX_ENTRIES``
entries and says ``truncated`` when it dropped any.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..durable import write_atomically
from ..media.codecs import Codec, CodecSpec, is_g711
from ..media.g711 import G711
from ..realtime import protocol as rt
from .core import RunTool
from .timeline_svg import LANES, render

MAX_ENTRIES = 500  # per lane: the picture of any call stays under 1 MB (every lane full)
MAX_OPEN_TOOLS = 32  # tool calls in progress at once (the model asks, we bound)
MAX_NAME = 64  # characters of a tool's name kept (the model chooses it)
LOUD_LEVEL = 520  # |sample| at about -36 dBFS: louder is the caller's voice (or a noise)
LOUD_SHARE = 8  # a frame is loud when one sample in this many is above LOUD_LEVEL
CALLER_HANGOVER_S = 0.3  # quiet this long ends the caller's speech (as a VAD's silence)
MIN_CALLER_SPAN_S = 0.08  # shorter bursts (a click, a key's tone edge) are not speech
AGENT_MERGE_S = 0.06  # an underrun this short does not split the agent's audio in two
LOSS_EVERY_FRAMES = 50  # the lost-packet count is read once per this many pacer frames

VERSION = 1


def loud_table(codec: G711) -> bytes:
    """A ``bytes.translate`` table: 1 for the codes louder than LOUD_LEVEL, else 0."""
    decoded = codec.decode(bytes(range(256)))
    return bytes(1 if abs(int(v)) >= LOUD_LEVEL else 0 for v in decoded)


class Lane:
    """One lane's entries (dicts with ``start``/``end`` or ``at``), at most ``cap``."""

    __slots__ = ("cap", "entries", "truncated")

    def __init__(self, cap: int = MAX_ENTRIES) -> None:
        self.cap = cap
        self.entries: list[dict[str, Any]] = []
        self.truncated = False

    def add(self, entry: dict[str, Any]) -> bool:
        if len(self.entries) >= self.cap:
            self.truncated = True
            return False
        self.entries.append(entry)
        return True


class Timeline:
    """Marks of one call, relative to its answer at ``origin`` (monotonic seconds)."""

    def __init__(
        self,
        origin: float,
        codec: Codec | CodecSpec,
        *,
        lost: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
        cap: int = MAX_ENTRIES,
    ) -> None:
        """``lost``: the receiver's lost-packet count so far, read once a second."""
        self.origin = origin
        self.clock = clock
        self.lanes = {name: Lane(cap) for name in LANES}
        # G.711: a table on the payload's codes; other codecs are judged on the decoded audio
        # the uplink hands to caller_pcm (their payloads mean nothing without the decoder).
        self._loud = loud_table(codec) if is_g711(codec) and isinstance(codec, G711) else None
        self._lost = lost
        self._lost_seen = 0
        self._frames_to_loss = LOSS_EVERY_FRAMES
        self._caller_from: float | None = None  # the caller's speech span being heard
        self._caller_last = 0.0  # the last loud frame's arrival
        self.agent_on = False  # the last frame the pacer took carried the agent's audio
        self._agent_from: float | None = None
        self._vad_from: float | None = None
        self._tools: dict[str, dict[str, Any]] = {}  # tool spans open, by call_id
        self.ended_at: float | None = None

    # --- per frame (the hot path) -----------------------------------------------------------

    def caller_frame(self, payload: bytes, now: float) -> None:
        """One G.711 payload from the caller, arrived at ``now`` (other codecs: caller_pcm)."""
        if self._loud is not None:
            loud = payload.translate(self._loud).count(1) * LOUD_SHARE >= len(payload)
            self._caller(loud, now, len(payload) / 8000)

    def caller_pcm(self, pcm: np.ndarray, rate: int) -> None:
        """The caller's decoded audio (G.722, Opus), as the uplink decodes it."""
        loud = int(np.count_nonzero(np.abs(pcm) >= LOUD_LEVEL)) * LOUD_SHARE >= len(pcm)
        self._caller(loud, self.clock(), len(pcm) / rate)

    def _caller(self, loud: bool, now: float, duration_s: float) -> None:
        if loud:
            if self._caller_from is None:
                self._caller_from = now - duration_s  # the frame's start
            self._caller_last = now
        elif self._caller_from is not None and now - self._caller_last > CALLER_HANGOVER_S:
            self._close_caller()

    def agent_frame(self, talking: bool) -> None:
        """The pacer took a frame: audio (``talking``) or silence. The clock is read only
        when that changes, and once a second for the lost packets."""
        if talking is not self.agent_on:
            self._agent_edge(talking, self.clock())
        self._frames_to_loss -= 1
        if not self._frames_to_loss:
            self._frames_to_loss = LOSS_EVERY_FRAMES
            self.loss_check(self.clock())

    def _close_caller(self) -> None:
        start, end = self._caller_from, self._caller_last
        self._caller_from = None
        if start is not None and end - start >= MIN_CALLER_SPAN_S:
            self.lanes["caller_speech"].add({"start": start, "end": end})

    def _agent_edge(self, talking: bool, now: float) -> None:
        self.agent_on = talking
        lane = self.lanes["agent_audio"]
        if talking:
            last = lane.entries[-1] if lane.entries else None
            if last is not None and now - last["end"] <= AGENT_MERGE_S:
                lane.entries.pop()  # an underrun: the same stretch of audio goes on
                self._agent_from = last["start"]
            else:
                self._agent_from = now
        elif self._agent_from is not None:
            lane.add({"start": self._agent_from, "end": now})
            self._agent_from = None

    def loss_check(self, now: float) -> None:
        """Packets declared lost since the last check, as one mark at ``now``."""
        lost = self._lost()
        if lost > self._lost_seen:
            self.lanes["loss"].add({"at": now, "lost": lost - self._lost_seen})
        self._lost_seen = lost

    # --- what the call knows otherwise --------------------------------------------------------

    def server_event(self, event: rt.ServerEvent, now: float) -> None:
        """The service's VAD: speech_started .. speech_stopped."""
        kind = type(event)
        if kind is rt.SpeechStarted:
            if self._vad_from is None:
                self._vad_from = now
        elif kind is rt.SpeechStopped and self._vad_from is not None:
            self.lanes["service_vad"].add({"start": self._vad_from, "end": now})
            self._vad_from = None

    def commands(self, commands: Iterable[object], now: float) -> None:
        """The core's commands: a cut answer (truncate, heard ms), a tool's start and end."""
        for command in commands:
            if isinstance(command, rt.Truncate):
                self.lanes["barge_ins"].add(
                    {"at": now, "kind": "truncate", "heard_ms": int(command.audio_end_ms)}
                )
            elif isinstance(command, RunTool):
                self._tool_started(command.call.call_id, command.call.name, now)
            elif isinstance(command, rt.FunctionOutput):
                self._tool_ended(command.call_id, now)

    def local_hold(self, now: float) -> None:
        """The gateway's own VAD held the agent's audio (local barge-in)."""
        self.lanes["barge_ins"].add({"at": now, "kind": "local_hold"})

    def key_in(self, digit: str, now: float) -> None:
        self.lanes["dtmf"].add({"at": now, "digit": digit[:1], "direction": "in"})

    def key_out(self, digit: str) -> None:
        """A key the gateway starts sending to the caller (RFC 4733), now."""
        self.lanes["dtmf"].add({"at": self.clock(), "digit": digit[:1], "direction": "out"})

    def transfer(self, mode: str, outcome: str) -> None:
        """A transfer's outcome, now: a mark in the tools lane (the tool's span shows how
        long it took)."""
        self.lanes["tools"].add({"at": self.clock(), "kind": f"{mode[:5]}: {outcome[:16]}"})

    def session_replaced(self, kind: str) -> None:
        """The link replaced the Realtime session (reconnect, rollover) or failed to."""
        self.lanes["session"].add({"at": self.clock(), "kind": kind[:32]})

    def _tool_started(self, call_id: str, name: str, now: float) -> None:
        if len(self._tools) >= MAX_OPEN_TOOLS or call_id in self._tools:
            self.lanes["tools"].truncated = True
            return
        self._tools[call_id] = {"start": now, "name": name[:MAX_NAME]}

    def _tool_ended(self, call_id: str, now: float) -> None:
        entry = self._tools.pop(call_id, None)
        if entry is not None:
            self.lanes["tools"].add({**entry, "end": now})

    # --- the end ------------------------------------------------------------------------------

    def end(self, now: float) -> None:
        """The call is over: spans still open end here (tools marked unfinished)."""
        if self.ended_at is not None:
            return
        self.ended_at = now
        if self._caller_from is not None:
            self._close_caller()
        if self.agent_on:
            self._agent_edge(False, now)
        if self._vad_from is not None:
            self.lanes["service_vad"].add({"start": self._vad_from, "end": now})
            self._vad_from = None
        for entry in self._tools.values():
            self.lanes["tools"].add({**entry, "end": now, "unfinished": True})
        self._tools.clear()
        self.loss_check(now)

    def snapshot(self, call_id: str) -> dict[str, Any]:
        """The marks relative to the answer, in seconds (ms precision), and each turn's
        response time: the JSON file's content, what the picture is drawn from."""
        end = self.ended_at if self.ended_at is not None else self.clock()
        lanes = {
            name: {
                "entries": [_relative(e, self.origin) for e in lane.entries],
                "truncated": lane.truncated,
            }
            for name, lane in self.lanes.items()
        }
        return {
            "version": VERSION,
            "call_id": call_id,
            "origin_monotonic_s": round(self.origin, 6),
            "duration_s": round(max(end - self.origin, 0.0), 3),
            "lanes": lanes,
            "turns": turns(lanes["caller_speech"]["entries"], lanes["agent_audio"]["entries"]),
        }


def _relative(entry: dict[str, Any], origin: float) -> dict[str, Any]:
    out = dict(entry)
    for key in ("start", "end", "at"):
        if key in out:
            out[key] = round(out[key] - origin, 3)
    return out


def turns(
    caller: Sequence[dict[str, Any]], agent: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each turn's response time: the end of the caller's speech to the start of the agent's
    next audio, when the caller did not speak again before it (then the later speech's end
    counts). Audio that started while the caller spoke answers nobody's turn."""
    out: list[dict[str, Any]] = []
    j = 0
    for i, speech in enumerate(caller):
        end = speech["end"]
        while j < len(agent) and agent[j]["start"] < end:
            j += 1
        if j == len(agent):
            break
        answer = agent[j]["start"]
        if i + 1 < len(caller) and caller[i + 1]["start"] <= answer:
            continue  # the caller spoke again first: that speech's turn
        out.append(
            {"caller_end": end, "agent_start": answer, "response_ms": round((answer - end) * 1000)}
        )
    return out


def write_files(directory: Path, call_id: str, data: dict[str, Any]) -> None:
    """``<call_id>.timeline.svg`` in ``directory`` (the marks in its metadata), replaced whole
    (durable.write_atomically): blocking, for a worker thread."""
    write_atomically(directory / f"{call_id}.timeline.svg", render(data).encode())
