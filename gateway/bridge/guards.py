"""Guards on a call's time, as plain objects with the time passed in (the call core asks them
on each tick): the model told to wrap up before the call's longest duration, and a caller
who stays silent prompted, then bidden goodbye.

Each answers "what now" for a moment; the core turns that into commands for the model.
"""

from __future__ import annotations

from typing import Literal

SILENCE_TIMEOUT = "silence_timeout"  # the end reason after the goodbye

WRAP_UP = (
    "The call will end automatically in about {seconds} seconds. Wrap up now: finish what you "
    "are saying and say goodbye."
)
STILL_THERE = (
    "The caller has said nothing for {seconds} seconds. Ask briefly whether they are still there."
)
GOODBYE = "The caller is not answering. Say a short goodbye; the call then ends."


class WrapUp:
    """Tells the model once, ``wrap_up_s`` before the call's end, to finish (not at all when
    the call may not last longer than that: it would be told at the answer)."""

    def __init__(self, max_call_s: float, wrap_up_s: float) -> None:
        self.wrap_up_s = wrap_up_s
        self.max_call_s = max_call_s
        self._at: float | None = None

    def answered(self, now: float) -> None:
        if 0 < self.wrap_up_s < self.max_call_s:
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


class CallGuards:
    """One call's wrap-up and silence guard (either may be off), as the call's end
    (``ending.CallEnd``) asks them: what the model is told when their time comes."""

    def __init__(self, wrap_up: WrapUp | None, silence: SilenceGuard | None) -> None:
        self.wrap_up = wrap_up
        self.silence = silence

    @classmethod
    def configured(
        cls, max_call_s: float, wrap_up_s: float, silence_timeout_s: float | None
    ) -> CallGuards:
        """(WrapUp itself is off for 0, or when the call cannot last longer than it.)"""
        return cls(
            WrapUp(max_call_s, wrap_up_s),
            SilenceGuard(silence_timeout_s) if silence_timeout_s else None,
        )

    def answered(self, now: float) -> None:
        """The count of silence starts at the answer too: a caller who never speaks after a
        call without a greeting is asked as well."""
        if self.wrap_up is not None:
            self.wrap_up.answered(now)
        if self.silence is not None:
            self.silence.agent_quiet(now)

    def caller_active(self) -> None:
        if self.silence is not None:
            self.silence.caller_active()

    def agent_talking(self) -> None:
        """The agent speaks, or works (a tool runs), or the caller holds the call."""
        if self.silence is not None:
            self.silence.agent_talking()

    def agent_quiet(self, at: float) -> None:
        if self.silence is not None:
            self.silence.agent_quiet(at)

    @property
    def deadline(self) -> float | None:
        times = [g.deadline for g in (self.wrap_up, self.silence) if g is not None]
        return min((t for t in times if t is not None), default=None)

    def due(self, now: float) -> list[tuple[str, str]]:
        """What to tell the model by ``now``, each as (kind, text): ``wrap_up``, ``prompt``
        (is the caller still there), ``goodbye`` (then the call ends after the agent's words)."""
        found: list[tuple[str, str]] = []
        if self.wrap_up is not None and (text := self.wrap_up.due(now)) is not None:
            found.append(("wrap_up", text))
        if self.silence is not None and (asked := self.silence.due(now)) is not None:
            found.append(asked)
        return found
