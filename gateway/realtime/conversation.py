"""What has been said on a call, from the transcripts: what a new session is told (sans-I/O).

This module also holds the call's one rule for how much of an interrupted answer was heard
(:func:`cut_text`): the transcript file and the context replayed to a new session both cut
with it, from the same figures (the playback's ``heard_ms`` of the item's ``received_ms``), so
they cannot disagree.

A Realtime session keeps the conversation on the server; when the call moves to a new session
(a dropped socket, the session limit) the new one starts empty. This log keeps each turn's text
in the order the turns happened, so the new session can be given the call so far as text items.
The caller's words are known only when input transcription is on (agent.input_transcription).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import protocol as rt

MAX_REPLAY_CHARS = 8000  # about 2,000 tokens: the recent context, not the whole call
MAX_TURNS = 500


def cut_text(text: str, heard_ms: float, audio_ms: float) -> str:
    """The part of `text` spoken in the first `heard_ms` of `audio_ms`, whole words only.

    The service gives no word timing over WebSocket, so the cut is proportional by
    characters (a long word takes longer to say than a short one), snapped back to the last
    word the caller heard to its end.
    """
    if audio_ms <= 0 or heard_ms >= audio_ms:
        return text
    n = round(len(text) * max(heard_ms, 0.0) / audio_ms)
    if n < len(text) and not text[n].isspace():
        n = text.rfind(" ", 0, n + 1)  # the word under the cut was not heard to its end
    return text[: max(n, 0)].rstrip()


@dataclass(slots=True)
class Turn:
    role: str  # "user" | "assistant", as conversation items name them
    text: str | None = None
    audio_bytes: int = 0  # assistant audio received
    heard_ms: int | None = None  # set when the caller cut the answer short (truncate)
    audio_ms: float | None = None  # the answer's audio received when it was cut (playback)


class Conversation:
    """Turns by item id, in the order they began (speech started, first audio delta)."""

    def __init__(self, bytes_per_ms: int) -> None:
        self.bytes_per_ms = bytes_per_ms
        self.turns: dict[str, Turn] = {}

    def observe(self, event: rt.ServerEvent) -> None:
        match event:
            case rt.SpeechStarted():
                self._turn(event.item_id, "user")
            case rt.AudioDelta():
                self._turn(event.item_id, "assistant").audio_bytes += len(event.audio)
            case rt.Transcript():
                role = "user" if event.role == "caller" else "assistant"
                self._turn(event.item_id, role).text = event.text.strip() or None
            case _:
                pass

    def cut(self, item_id: str, audio_end_ms: int, audio_ms: float | None = None) -> None:
        """The caller heard only `audio_end_ms` of this answer's `audio_ms` (a barge-in).

        `audio_ms` is the playback's count (``ItemAccount.received_ms``), the figure the
        transcript cuts with; without it, the audio this log saw arrive for the item.
        """
        turn = self.turns.get(item_id)
        if turn is not None and turn.role == "assistant":
            turn.heard_ms = audio_end_ms
            turn.audio_ms = audio_ms

    def replay(self) -> list[tuple[str, str]]:
        """(role, text) of the most recent turns that fit MAX_REPLAY_CHARS, oldest first."""
        items: list[tuple[str, str]] = []
        size = 0
        for turn in reversed(self.turns.values()):
            text = self._heard(turn)
            if not text:
                continue
            size += len(text)
            if size > MAX_REPLAY_CHARS:
                break
            items.append((turn.role, text))
        return items[::-1]

    def _turn(self, item_id: str, role: str) -> Turn:
        turn = self.turns.get(item_id)
        if turn is None:
            turn = self.turns[item_id] = Turn(role)
            if len(self.turns) > MAX_TURNS:
                del self.turns[next(iter(self.turns))]
        return turn

    def _heard(self, turn: Turn) -> str | None:
        """The text as far as the caller heard it (:func:`cut_text`), marked as cut short."""
        if turn.text is None or turn.heard_ms is None:
            return turn.text
        audio_ms = turn.audio_ms
        if audio_ms is None:
            audio_ms = turn.audio_bytes / self.bytes_per_ms
        heard = cut_text(turn.text, turn.heard_ms, audio_ms)
        if heard == turn.text:
            return turn.text
        return heard + " …" if heard else None
