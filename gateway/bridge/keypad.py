"""The caller's key presses, gathered into one message for the model.

An IVR-style entry (an account number, then #) should reach the model as one turn, not as
a response per digit that the next digit would interrupt.
"""

from __future__ import annotations


class Keypad:
    """Sans-I/O: feed digits with their time; take the entry when it is complete."""

    def __init__(self, inter_digit_ms: int) -> None:
        self._gap_s = inter_digit_ms / 1000
        self._digits: list[str] = []
        self._last = 0.0

    def press(self, digit: str, now: float) -> str | None:
        """Add a digit; the entry when this digit completes it (#, or no gathering)."""
        self._digits.append(digit)
        self._last = now
        if digit == "#" or self._gap_s == 0:
            return self.take()
        return None

    def due(self, now: float) -> str | None:
        """The entry once the caller has paused longer than the inter-digit time."""
        if self._digits and now - self._last >= self._gap_s:
            return self.take()
        return None

    @property
    def deadline(self) -> float | None:
        return self._last + self._gap_s if self._digits else None

    def take(self) -> str | None:
        entry, self._digits = "".join(self._digits), []
        return entry or None


def dtmf_message(entry: str) -> str:
    """The text the model reads for a key entry."""
    return f"[DTMF {entry}]"
