"""Answering-machine detection on one call, from the answer to its decision, and in voicemail
mode on to the moment the message is to be left (sans-I/O: audio and time passed in).

What it decides, the call's core (:class:`~.core.CallCore`) carries out: until the decision
the callee's audio does not reach the model (:attr:`AnswerScreen.passing`), so the model
neither hears the greeting nor answers it, and the agent's first words wait for the decision
(at most the analysis time). Then a :class:`Decided` goes out: the model is told (a system
message) and, for a human or an unknown answer, the agent speaks first (the greeting, if
any). In voicemail mode, a machine's audio never reaches the model; a :class:`LeaveMessage`
follows when the beep ends, when the greeting has been followed by ``no_beep_silence_ms`` of
silence, or ``beep_timeout_s`` after the decision; the core has the message spoken word for
word and hangs up after it (end reason ``voicemail_left``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..config import AmdConfig
from ..hooks.events import Emit
from ..media.amd import (
    HUMAN,
    MACHINE,
    UNKNOWN,
    AmdDecision,
    CadenceDetector,
    CadenceRules,
)
from ..media.beep import BeepDetector

VOICEMAIL_LEFT = "voicemail_left"  # the end reason of a call that left the message
WALL_SLACK_S = 0.5  # beyond the analysis time, for audio that arrives late or not at all
TOLD = {
    HUMAN: "Answering-machine detection: a person answered the call. Speak to them now.",
    MACHINE: "Answering-machine detection: an answering machine answered the call; its "
    "recorded greeting is playing. What you say after it is recorded as a message.",
    UNKNOWN: "Answering-machine detection could not tell whether a person or an answering "
    "machine answered the call. Speak as to a person.",
}


@dataclass(frozen=True, slots=True)
class Decided:
    """The answer is classified: for the call's log, events (call.amd) and record."""

    decision: AmdDecision
    mode: str

    @property
    def waits_for_beep(self) -> bool:
        return self.mode == "voicemail" and self.decision.result == MACHINE

    @property
    def speaks_first(self) -> bool:
        """A person (or maybe one) is there: the agent's first words go now."""
        return self.decision.result != MACHINE


@dataclass(frozen=True, slots=True)
class LeaveMessage:
    """voicemail: the machine records now; the message is spoken, then the call ends."""

    after: Literal["beep", "silence", "timeout"]
    ms: int  # since the answer
    message: str
    beep_hz: float | None = None


Outcome = Decided | LeaveMessage
NONE: tuple[Outcome, ...] = ()


def effective_mode(route: Any) -> str:
    """The call's mode: its own (``Selection.amd``, an outbound call's request) unless off,
    else its profile's ``agent.amd.mode``."""
    own = getattr(route, "amd", "off")
    return own if own and own != "off" else route.agent.amd.mode


def rules_of(cfg: AmdConfig) -> CadenceRules:
    return CadenceRules(
        initial_silence_ms=cfg.initial_silence_ms,
        greeting_ms=cfg.greeting_ms,
        after_greeting_silence_ms=cfg.after_greeting_silence_ms,
        total_analysis_time_ms=cfg.total_analysis_time_ms,
        min_word_length_ms=cfg.min_word_length_ms,
        between_words_silence_ms=cfg.between_words_silence_ms,
        maximum_number_of_words=cfg.maximum_number_of_words,
        maximum_word_length_ms=cfg.maximum_word_length_ms,
        silence_threshold=cfg.silence_threshold,
    )


class AnswerScreen:
    """One call's detection. ``mode`` is detect or voicemail (voicemail without a message
    is detect)."""

    ANALYSING, WAITING, DONE = "analysing", "waiting", "done"

    def __init__(
        self,
        mode: str,
        cfg: AmdConfig,
        rate: int = 8000,
        report: Callable[[Outcome], None] = lambda outcome: None,
    ) -> None:
        """``report``: where the shell sends the outcomes, once carried out (the call's log,
        events and record: :func:`reported`)."""
        self.mode = mode if mode != "voicemail" or cfg.voicemail_message else "detect"
        self.report = report
        self.cfg = cfg
        self.cadence = CadenceDetector(rules_of(cfg), rate)
        self.beep = BeepDetector(rate)
        self.state = self.ANALYSING
        self.passing = False  # the callee's audio goes on to the model
        self._started_at: float | None = None
        self._decided_at = 0.0
        self._voice_at = 0.0  # the callee's last voice (voicemail: the greeting's end)

    def start(self, now: float) -> None:
        """The call is answered: the analysis runs from now."""
        self._started_at = self._voice_at = now

    @property
    def deadline(self) -> float | None:
        """When :meth:`tick` is next due (the analysis time, the wait for the beep)."""
        if self._started_at is None or self.state == self.DONE:
            return None
        if self.state == self.ANALYSING:
            return self._started_at + self.cfg.total_analysis_time_ms / 1000 + WALL_SLACK_S
        return min(
            self._voice_at + self.cfg.no_beep_silence_ms / 1000,
            self._decided_at + self.cfg.beep_timeout_s,
        )

    def audio(self, pcm: np.ndarray, now: float) -> tuple[Outcome, ...]:
        """A frame of the callee's audio (PCM16 at the call's rate), as it arrives."""
        if self.state == self.DONE or self._started_at is None:
            return NONE
        beep = self.beep.feed(pcm)
        if self.state == self.ANALYSING:
            decision = self.cadence.feed(pcm)
            if beep is not None:  # a beep ends a greeting, whatever its cadence said
                decision = AmdDecision(MACHINE, "beep", self.cadence.elapsed_ms)
            if decision is None:
                return NONE
            decided = self._decided(decision, now)
            if beep is not None and self.state == self.WAITING:
                return decided, self._leave("beep", now, beep.hz)
            return (decided,)
        if beep is not None:
            return (self._leave("beep", now, beep.hz),)
        if self.beep.in_tone or self.cadence.level(pcm) >= self.cfg.silence_threshold:
            self._voice_at = now
        return NONE

    def tick(self, now: float) -> tuple[Outcome, ...]:
        """Time passed: the analysis time is up (no audio came), or the wait for the beep."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return NONE
        if self.state == self.ANALYSING:
            cause = "toolong" if self.cadence.elapsed_ms else "noaudio"
            return (self._decided(AmdDecision(UNKNOWN, cause, self._ms(now)), now),)
        late = now >= self._decided_at + self.cfg.beep_timeout_s
        return (self._leave("timeout" if late else "silence", now),)

    def _decided(self, decision: AmdDecision, now: float) -> Decided:
        decided = Decided(decision, self.mode)
        self._decided_at = self._voice_at = now
        if decided.waits_for_beep:
            self.state = self.WAITING
        else:
            self.state, self.passing = self.DONE, True
        return decided

    def _leave(
        self, after: Literal["beep", "silence", "timeout"], now: float, hz: float | None = None
    ) -> LeaveMessage:
        self.state = self.DONE  # passing stays off: nothing on the line cuts the message
        return LeaveMessage(after, self._ms(now), self.cfg.voicemail_message or "", hz)

    def _ms(self, now: float) -> int:
        started = self._started_at if self._started_at is not None else now
        return round((now - started) * 1000)


def screen_for(
    route: Any,
    log: Any,
    report: Callable[[Outcome], None] = lambda outcome: None,
    rate: int = 8000,
) -> AnswerScreen | None:
    """The call's screen, or None when its mode is off. (voicemail asked for a call whose
    profile has no voicemail_message is detect, with a warning.)"""
    mode = effective_mode(route)
    if mode == "off":
        return None
    screen = AnswerScreen(mode, route.agent.amd, rate, report)
    if screen.mode != mode:
        log.warning("call.amd_no_voicemail_message", profile=getattr(route, "profile", None))
    return screen


def reported(record: Any, emit: Emit, log: Any, outcome: Outcome) -> None:
    """An outcome into the call's record and log; the decision also as event call.amd."""
    fields = report(outcome)
    record.amd = {**(record.amd or {}), **fields}
    if isinstance(outcome, Decided):
        log.info("call.amd", **fields)
        emit("call.amd", fields)
    else:
        log.info("call.voicemail", **fields["voicemail"])


def report(outcome: Outcome) -> dict[str, Any]:
    """What the call's record and log keep of an outcome."""
    if isinstance(outcome, Decided):
        d = outcome.decision
        return {"mode": outcome.mode, "result": d.result, "cause": d.cause, "ms": d.ms}
    left = {"after": outcome.after, "ms": outcome.ms}
    return {"voicemail": left | ({"beep_hz": outcome.beep_hz} if outcome.beep_hz else {})}
