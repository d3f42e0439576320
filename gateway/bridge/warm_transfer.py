"""A warm transfer's steps, decided without I/O: hold, dial, brief, join, or come back.

The shell (the call's transfer task) feeds in what happened on the wire (the hold re-INVITE
answered, the target's final response, the briefing played, the REFER's outcome, a hang-up)
and runs the commands it gets back. Every path ends in exactly one :class:`Finish` whose
outcome word is what the events and the call record say:

- joined_by_refer: the caller's side took the REFER with Replaces and reported the new call
  up (NOTIFY 2xx); our two legs end.
- bridged: the caller's side refused the REFER (405, 501, 603 or a failed NOTIFY); the
  gateway joins the legs in its media engine until either side hangs up.
- target_busy, no_answer, declined, failed: the target never took the call (or hung up while
  being briefed); the caller comes off hold and the model is told why (:class:`Tell`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

JOINED_BY_REFER = "joined_by_refer"
BRIDGED = "bridged"
TARGET_BUSY = "target_busy"
NO_ANSWER = "no_answer"
DECLINED = "declined"
FAILED = "failed"
OUTCOMES = (JOINED_BY_REFER, BRIDGED, TARGET_BUSY, NO_ANSWER, DECLINED, FAILED)


class Step(enum.Enum):
    HOLDING = "holding"  # our re-INVITE sendonly is out
    DIALING = "dialing"  # the second leg rings
    BRIEFING = "briefing"  # the human answered and hears the summary
    JOINING = "joining"  # our REFER with Replaces is out
    BRIDGED = "bridged"  # the gateway relays the legs' media
    RESUMING = "resuming"  # our re-INVITE sendrecv is out (the target did not take it)
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Hold:
    """re-INVITE the caller with a=sendonly and play music on hold."""


@dataclass(frozen=True, slots=True)
class Dial:
    """INVITE the target on a second leg."""

    target: str


@dataclass(frozen=True, slots=True)
class Brief:
    """Tell the human on the second leg what the call is about."""

    summary: str


@dataclass(frozen=True, slots=True)
class Refer:
    """REFER the caller's side to the target's leg with Replaces."""


@dataclass(frozen=True, slots=True)
class Bridge:
    """Relay the two legs' media through the gateway (the model no longer hears either)."""


@dataclass(frozen=True, slots=True)
class Resume:
    """re-INVITE the caller with a=sendrecv; the music stops, the model has the caller again."""


@dataclass(frozen=True, slots=True)
class EndTarget:
    """End the second leg (CANCEL while it rings, BYE once answered)."""


@dataclass(frozen=True, slots=True)
class Tell:
    """A system message for the model: why the caller is back."""

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The transfer is over, with this outcome (one of OUTCOMES) and detail."""

    outcome: str
    detail: str

    @property
    def ok(self) -> bool:
        """The caller reached the human (the model's part in the call is over)."""
        return self.outcome in (JOINED_BY_REFER, BRIDGED)


Command = Hold | Dial | Brief | Refer | Bridge | Resume | EndTarget | Tell | Finish

DIALOG_GONE = (408, 481)  # a request in the caller's dialog got these: the dialog is over


def target_outcome(status: int, *, local: bool = False, cancelled: bool = False) -> str:
    """The outcome word of the target's final response that is not a 2xx."""
    if cancelled or status in (408, 480, 487):
        return NO_ANSWER
    if local:
        return FAILED
    if status in (486, 600):
        return TARGET_BUSY
    if status == 603:
        return DECLINED
    return FAILED


_WHY = {
    TARGET_BUSY: "the line was busy",
    NO_ANSWER: "nobody answered",
    DECLINED: "the call was declined",
    FAILED: "the call could not be made",
}


class WarmTransfer:
    """One warm transfer of one call, from the hold to its outcome."""

    def __init__(self, destination: str, target: str, summary: str) -> None:
        self.destination = destination
        self.target = target
        self.summary = summary
        self.step = Step.HOLDING
        self.outcome: Finish | None = None
        self._returning: Finish | None = None  # the outcome told once the caller is back

    def start(self) -> list[Command]:
        return [Hold()]

    def held(self, status: int | None) -> list[Command]:
        """The answer to our hold re-INVITE. A refusal (488, 491 ...) still lets us go on:
        the caller hears the music either way; a dialog gone (408, 481, none) ends it."""
        if self.step is not Step.HOLDING:
            return []
        if status is None or status in DIALOG_GONE:
            return self._finish(FAILED, f"the caller's call is gone ({status or 'no answer'})")
        self.step = Step.DIALING
        return [Dial(self.target)]

    def target_answered(
        self, status: int, reason: str = "", *, local: bool = False, cancelled: bool = False
    ) -> list[Command]:
        """The second leg's final response."""
        if self.step is not Step.DIALING:
            return [EndTarget()] if 200 <= status < 300 else []
        if 200 <= status < 300:
            self.step = Step.BRIEFING
            return [Brief(self.summary)]
        outcome = target_outcome(status, local=local, cancelled=cancelled)
        detail = f"{status} {reason}".strip() if not local else reason or "no response"
        return self._come_back(outcome, detail)

    def briefed(self) -> list[Command]:
        """The summary was played: the legs are joined, by REFER first."""
        if self.step is not Step.BRIEFING:
            return []
        self.step = Step.JOINING
        return [Refer()]

    def referred(self, ok: bool, detail: str) -> list[Command]:
        """How our REFER with Replaces went: the caller's side joined the target, or it
        refused (any refusal while both legs are up: the gateway bridges them)."""
        if self.step is not Step.JOINING:
            return []
        if ok:
            return [EndTarget(), *self._finish(JOINED_BY_REFER, detail)]
        self.step = Step.BRIDGED
        return [Bridge(), *self._finish(BRIDGED, f"REFER not taken ({detail}); bridged")]

    def resumed(self, status: int | None) -> list[Command]:
        """The answer to our re-INVITE sendrecv: the caller is back, the model is told."""
        if self.step is not Step.RESUMING or self._returning is None:
            return []
        back, self._returning = self._returning, None
        why = _WHY.get(back.outcome, "the call could not be made")
        text = (
            f"The transfer to {self.destination} did not happen: {why} ({back.detail}). The "
            "caller is back with you and off hold; tell them, and offer what else you can do."
        )
        return [Tell(text), *self._finish(back.outcome, back.detail)]

    def target_hung_up(self) -> list[Command]:
        """The human hung up while being briefed or before the REFER's outcome: the leg's
        media ends too (EndTarget; its dialog is over, so no BYE goes out)."""
        if self.step in (Step.BRIEFING, Step.JOINING):
            return self._come_back(FAILED, "the target hung up before the transfer")
        return []

    def caller_hung_up(self) -> list[Command]:
        """The caller left: whatever is under way on the second leg ends too."""
        if self.step in (Step.DONE, Step.BRIDGED):
            return []
        ending = [EndTarget()] if self.step in (Step.DIALING, Step.BRIEFING, Step.JOINING) else []
        return [*ending, *self._finish(FAILED, "the caller hung up during the transfer")]

    def _come_back(self, outcome: str, detail: str) -> list[Command]:
        self.step = Step.RESUMING
        self._returning = Finish(outcome, detail)
        return [EndTarget(), Resume()]

    def _finish(self, outcome: str, detail: str) -> list[Command]:
        if self.step is not Step.BRIDGED:
            self.step = Step.DONE
        self.outcome = Finish(outcome, detail)
        return [self.outcome]
