"""How long a call may last, how long the caller may keep it on hold, and how long it may
send no RTP.

Without them a caller (or a PBX that lost the call) could keep a call slot and a Realtime
session forever: the RTP timeout does not run while the call is on hold, since a holding
caller may rightly send nothing; `sip.max_calls` such calls close the gateway to everyone.
Plain object, times passed in (the loop's clock in the bridge, any numbers in tests); the
call's core consults it on each tick and asks it when the next tick is due.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import GatewayConfig

MAX_CALL_DURATION = "max_call_duration"  # end reasons (a bounded set: metric labels)
HOLD_TIMEOUT = "hold_timeout"
RTP_TIMEOUT = "rtp_timeout"


class CallerSilence(Protocol):
    """How long the caller has sent no RTP: the RTP receiver's count (media/receiver.py)."""

    def timeout_from(self, now: float) -> None: ...

    def silent_for(self, now: float) -> float | None: ...


class CallLimits:
    def __init__(
        self,
        max_call_s: float,
        hold_timeout_s: float,
        rtp_timeout_s: float = 0.0,
        caller: CallerSilence | None = None,
        wrap_up_s: float = 0.0,
    ) -> None:
        self.max_call_s = max_call_s
        self.wrap_up_s = wrap_up_s  # the model is told to finish this long before max_call_s
        self.hold_timeout_s = hold_timeout_s
        # 0 or no receiver: no RTP timeout (media.rtp_timeout_s 0 turns it off).
        self.rtp_timeout_s = rtp_timeout_s if caller is not None else 0.0
        self._caller = caller
        self._answered_at = 0.0
        self._held_since: float | None = None

    @classmethod
    def configured(cls, cfg: GatewayConfig, caller: CallerSilence) -> CallLimits:
        """From limits.max_call_s and wrap_up_s, media.hold_timeout_s and rtp_timeout_s."""
        limits, media = cfg.limits, cfg.media
        return cls(
            limits.max_call_s, media.hold_timeout_s, media.rtp_timeout_s, caller, limits.wrap_up_s
        )

    def answered(self, now: float) -> None:
        """The call starts counting from its answer (the RTP timeout too, at the latest)."""
        self._answered_at = now
        if self._caller is not None:
            self._caller.timeout_from(now)

    def hold(self, now: float) -> None:
        """The caller holds the call; a hold that goes on (a refresh re-INVITE) keeps its start."""
        if self._held_since is None:
            self._held_since = now

    def resume(self) -> None:
        self._held_since = None

    def held_for(self, now: float) -> float:
        return 0.0 if self._held_since is None else now - self._held_since

    def silent_for(self, now: float) -> float | None:
        """How long the caller has sent nothing (None: on hold, or no RTP timeout)."""
        if not self.rtp_timeout_s or self._caller is None:
            return None
        return self._caller.silent_for(now)

    def deadline(self, now: float) -> tuple[float, str]:
        """The next moment the call must end, as known at ``now``, and the end reason then.
        The RTP timeout's moment moves on with every packet: a tick there may find it moved."""
        at, reason = self._answered_at + self.max_call_s, MAX_CALL_DURATION
        if self._held_since is not None and self._held_since + self.hold_timeout_s < at:
            at, reason = self._held_since + self.hold_timeout_s, HOLD_TIMEOUT
        silent = self.silent_for(now)
        if silent is not None and now + self.rtp_timeout_s - silent < at:
            at, reason = now + self.rtp_timeout_s - silent, RTP_TIMEOUT
        return at, reason

    def expired(self, now: float) -> str | None:
        """The end reason when the call must end by ``now``, else None."""
        at, reason = self.deadline(now)
        return reason if now >= at else None
