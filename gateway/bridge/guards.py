"""Guards on a call's time, as plain objects with the time passed in (the call core asks them
on each tick): the model told to wrap up before the call's longest duration, and a caller
who stays silent prompted, then bidden goodbye.

Each answers "what now" for a moment; the core turns that into commands for the model.
"""

from __future__ import annotations

from typing import Literal

WRAP_UP = (
    "The call will end automatically in about {seconds} seconds. Wrap up now: finish what you "
    "are saying and say goodbye."
)
STILL_THERE = (
    "The caller has said nothing for {seconds} seconds. Ask briefly whether they are still there."
)
GOODBYE = "The caller is not answering. Say a short goodbye; the call then ends."


class WrapUp:
    """Tells the model once, ``wrap_up_s`` before the call's end, to finish."""

    def __init__(self, max_call_s: float, wrap_up_s: float) -> None:
        self.wrap_up_s = min(wrap_up_s, max_call_s)
        self.max_call_s = max_call_s
        self._at: float | None = None

    def answered(self, now: float) -> None:
        if self.wrap_up_s > 0:
            self._at = now + self.max_call_s - self.wrap_up_s

    @property
    def deadline(self) -> float | None:
        return self._at

    def due(self, now: float) -> str | None:
        """The instruction, once, when its time has come."""
        if self._at is None or now < self._at:
            return None
        self._at = None
        return WRAP_UP.format(seconds=round(self.wrap_up_s))


class SilenceGuard:
    """A caller silent for ``timeout_s`` after the agent finished speaking is asked whether
    they are still there, ``prompts`` times at most; then the agent says goodbye and the call
    ends. Any sign of the caller (speech, a key) starts the count again."""

    def __init__(self, timeout_s: float, prompts: int = 2) -> None:
        self.timeout_s = timeout_s
        self.prompts = prompts
        self._asked = 0
        self._since: float | None = None  # the agent went quiet; None while it talks
        self._finished = False

    def caller_active(self) -> None:
        """The caller spoke or pressed a key: the count starts again once the agent answers."""
        self._asked = 0
        self._since = None

    def agent_talking(self) -> None:
        self._since = None

    def agent_quiet(self, at: float) -> None:
        """The agent's last words end at ``at`` (now plus what is still buffered)."""
        if not self._finished:
            self._since = at

    @property
    def deadline(self) -> float | None:
        return None if self._since is None else self._since + self.timeout_s

    def due(self, now: float) -> tuple[Literal["prompt", "goodbye"], str] | None:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return None
        self._since = None  # until the agent has spoken again
        if self._asked < self.prompts:
            self._asked += 1
            return "prompt", STILL_THERE.format(seconds=round(self.timeout_s))
        self._finished = True
        return "goodbye", GOODBYE
