"""Where one Realtime session stands in the conversation (sans-I/O), for the link.

The link replaces a session at a pause (no one speaking, no answer due or running), closes for
the call an answer the replaced session was still giving, watches a running answer for a stall
and drops a truncate of an item the current session never produced. This object keeps what
those decisions need, from the session's own events; it is reset when a new session takes
over. What the call does about an answer (cancel, truncate, what was heard) is the call's core
(``bridge/core.py``), not this.
"""

from __future__ import annotations

from . import protocol as rt

MAX_ITEMS = 256  # item ids remembered per session (an answer has one or two)


class SessionTurns:
    def __init__(self, answers_by_itself: bool) -> None:
        self.answers_by_itself = answers_by_itself  # server VAD creates a response by itself
        # Assistant audio items of the session (the latest MAX_ITEMS: ids come from the
        # service), and of the answer in progress (at most MAX_ITEMS).
        self.items: dict[str, None] = {}
        self.talking = False
        self.answer_due = False
        self.response: str | None = None
        self.response_items: dict[str, bool] = {}  # item id -> audio done

    def observe(self, event: rt.ServerEvent) -> bool:
        """Take one server event; True when it may have changed :attr:`at_pause`."""
        match event:
            case rt.AudioDelta():
                if event.item_id not in self.items:
                    self.items[event.item_id] = None
                    if len(self.items) > MAX_ITEMS:
                        del self.items[next(iter(self.items))]
                if event.response_id == self.response and len(self.response_items) < MAX_ITEMS:
                    self.response_items.setdefault(event.item_id, False)
                return False
            case rt.SpeechStarted():
                self.talking = True
            case rt.SpeechStopped():
                self.talking = False
                self.answer_due = self.answers_by_itself
            case rt.ResponseStarted():
                self.response = event.response_id
                self.response_items = {}
                self.answer_due = False
            case rt.AudioDone():
                if event.item_id in self.response_items:
                    self.response_items[event.item_id] = True
                return False
            case rt.ResponseDone():
                if event.response_id == self.response:
                    self.response = None
            case _:
                return False
        return True

    @property
    def at_pause(self) -> bool:
        """No one speaking, no answer due or running: a switch here cuts nothing."""
        return not (self.talking or self.answer_due or self.response is not None)

    def cut_off(self) -> list[rt.ServerEvent]:
        """The events that close, for the call, the answer this session was still giving."""
        if self.response is None:
            return []
        events: list[rt.ServerEvent] = [
            rt.AudioDone(self.response, item)
            for item, done in self.response_items.items()
            if not done
        ]
        events.append(rt.ResponseDone(self.response, "cancelled", "session_replaced"))
        return events
