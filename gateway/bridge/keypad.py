"""The caller's key presses, gathered into one message for the model.

An IVR-style entry (an account number, then #) should reach the model as one turn, not as
a response per digit that the next digit would interrupt.

Keys come from the caller (RFC 4733 packets, SIP INFO) and cost model turns, so both the
entry and the rate are bounded: an entry is sent once it holds ``max_digits`` keys (a caller
who never pauses cannot grow one without end), and keys faster than a person can press them
are dropped (a token bucket: a burst of KEY_BURST, then KEYS_PER_S a second).
"""

from __future__ import annotations

# ITU-T Q.24 lets a keypad send at most about 12.5 digits a second (40 ms tone, 40 ms pause);
# a person, or a phone's speed dial, stays below 10. SIP INFO has no such limit of its own.
KEYS_PER_S = 10.0
KEY_BURST = 20


class Keypad:
    """Sans-I/O: feed digits with their time; take the entry when it is complete."""

    def __init__(self, inter_digit_ms: int, max_digits: int = 32) -> None:
        self._gap_s = inter_digit_ms / 1000
        self._max_digits = max_digits
        self._digits: list[str] = []
        self._last = 0.0
        self._tokens = float(KEY_BURST)
        self._refilled_at: float | None = None
        self.dropped = 0  # keys beyond the rate, never sent

    def accept(self, now: float) -> bool:
        """Whether a key pressed at ``now`` is within the rate (counted in ``dropped`` if not)."""
        if self._refilled_at is not None:
            elapsed = max(now - self._refilled_at, 0.0)
            self._tokens = min(float(KEY_BURST), self._tokens + elapsed * KEYS_PER_S)
        self._refilled_at = now
        if self._tokens < 1.0:
            self.dropped += 1
            return False
        self._tokens -= 1.0
        return True

    def press(self, digit: str, now: float) -> str | None:
        """Add a digit (one ``accept`` has let through); the entry when this digit completes it
        (#, max_digits reached, or no gathering)."""
        self._digits.append(digit)
        self._last = now
        if digit == "#" or self._gap_s == 0 or len(self._digits) >= self._max_digits:
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
