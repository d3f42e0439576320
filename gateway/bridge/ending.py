"""When and how a call ends, decided without I/O: after the agent's last words (end_call, a
transfer), or when its time is up (longest duration, hold, RTP silence).

Part of the call's core (:class:`~.core.CallCore` asks it and turns its answers into
commands); its own object so the core's turn and response state stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..realtime import protocol as rt
from .call_limits import RTP_TIMEOUT, CallLimits
from .guards import SILENCE_TIMEOUT, CallGuards
from .tools import ToolCall, transfer_output

TRANSFERRED = "transferred"  # the end reason of a call the far end took over


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call now, for this reason (agent_hangup, transferred, a time limit)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """Refer the caller to ``target`` (SIP REFER), or a warm transfer there (hold, brief the
    human with ``summary``, join); the outcome comes back through ``CallCore.transfer_done``."""

    target: str
    mode: str = "blind"
    summary: str = ""
    destination: str = field(default="", compare=False)  # the model's name for it, for the log


@dataclass(frozen=True, slots=True)
class TransferAsked:
    """The model's transfer_call, to run once its words are heard and answer with the outcome."""

    call: ToolCall
    destination: str
    target: str
    mode: str = "blind"
    summary: str = ""


class CallEnd:
    """What ends the call: a request waiting for the agent's words, a transfer under way,
    the time limits; and the hang-up once given (then nothing else ends it again)."""

    def __init__(
        self, limits: CallLimits | None, log: Any, silence_timeout_s: float | None = None
    ) -> None:
        self.limits = limits
        self.log = log
        # What the model is told before the end: wrap up, and is the silent caller still there.
        self.guards = CallGuards.configured(
            limits.max_call_s if limits is not None else 0.0,
            limits.wrap_up_s if limits is not None else 0.0,
            silence_timeout_s,
        )
        self.after_words: HangUp | TransferAsked | None = None
        self.transfer: TransferAsked | None = None
        self.hang_up: HangUp | None = None

    @property
    def pending(self) -> bool:
        """A hang-up or a transfer is asked, under way or given: the model is not asked to
        answer a tool's output meanwhile (it would talk over the end)."""
        return self.after_words is not None or self.transfer is not None or self.hang_up is not None

    def hang_up_after_words(self, reason: str) -> None:
        """A transfer not yet started gives way to it."""
        self.after_words = HangUp(reason)

    def transfer_after_words(self, asked: TransferAsked) -> str | None:
        """A reason when the transfer cannot be done."""
        if self.hang_up is not None or isinstance(self.after_words, HangUp):
            return "the call is ending"
        if self.transfer is not None or self.after_words is not None:
            return "a transfer is already under way"
        self.after_words = asked
        return None

    def words_heard(self) -> HangUp | Transfer | None:
        """The agent's words are out: what it asked for then, if anything."""
        after, self.after_words = self.after_words, None
        if after is None or self.hang_up is not None:
            return None
        if isinstance(after, HangUp):
            self.hang_up = after
            return after
        self.transfer = after
        return Transfer(after.target, after.mode, after.summary, after.destination)

    def transfer_done(self, ok: bool, detail: str) -> tuple[rt.FunctionOutput | None, bool]:
        """The model's answer for the transfer (None once the call is ending), and whether a
        response from the model is wanted (refused, and no hang-up asked meanwhile)."""
        asked, self.transfer = self.transfer, None
        if asked is None or self.hang_up is not None:
            return None, False
        text = transfer_output(asked.destination, ok, detail)
        output = rt.FunctionOutput(asked.call.call_id, text)
        if ok:
            self.hang_up = HangUp(TRANSFERRED)
        return output, not ok and not isinstance(self.after_words, HangUp)

    # --- the call's time ------------------------------------------------------------------------

    def answered(self, now: float) -> None:
        self.guards.answered(now)
        if self.limits is not None:
            self.limits.answered(now)

    def hold(self, held: bool, now: float) -> None:
        if self.limits is not None:
            if held:
                self.limits.hold(now)
            else:
                self.limits.resume()

    def deadline(self, now: float) -> float | None:
        if self.hang_up is not None:
            return None
        times = [self.guards.deadline if not self.pending else None]
        times.append(self.limits.deadline(now)[0] if self.limits is not None else None)
        return min((t for t in times if t is not None), default=None)

    def guards_due(self, now: float) -> list[str]:
        """What the model is to be told by ``now`` (nothing once the call is ending); after
        the silence guard's goodbye, the call ends once the agent's words are heard."""
        if self.pending:
            return []
        texts = []
        for kind, text in self.guards.due(now):
            self.log.info("call.guard", kind=kind)
            if kind == "goodbye":
                self.hang_up_after_words(SILENCE_TIMEOUT)
            texts.append(text)
        return texts

    def time_up(self, now: float) -> HangUp | None:
        """The hang-up when the call's time is up by ``now``: its longest duration, a hold
        too long, or no RTP (each logged with its figures)."""
        limits = self.limits
        if limits is None or self.hang_up is not None:
            return None
        reason = limits.expired(now)
        if reason is None:
            return None
        if reason == RTP_TIMEOUT:
            self.log.warning("call.rtp_timeout", silent_s=round(limits.silent_for(now) or 0.0, 1))
        else:
            self.log.warning(
                "call.time_limit",
                reason=reason,
                max_call_s=limits.max_call_s,
                hold_timeout_s=limits.hold_timeout_s,
                held_s=round(limits.held_for(now), 1),
            )
        self.hang_up = HangUp(reason)
        return self.hang_up
