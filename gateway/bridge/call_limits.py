"""How long a call may last, and how long the caller may keep it on hold.

Without them a caller (or a PBX that lost the call) could keep a call slot and a Realtime
session forever: the RTP timeout does not run while the call is on hold, since a holding
caller may rightly send nothing; `sip.max_calls` such calls close the gateway to everyone.
Plain object, times passed in (the loop's clock in the bridge, any numbers in tests).
"""

from __future__ import annotations

MAX_CALL_DURATION = "max_call_duration"  # end reasons (a bounded set: metric labels)
HOLD_TIMEOUT = "hold_timeout"


class CallLimits:
    def __init__(self, max_call_s: float, hold_timeout_s: float) -> None:
        self.max_call_s = max_call_s
        self.hold_timeout_s = hold_timeout_s
        self._answered_at = 0.0
        self._held_since: float | None = None

    def answered(self, now: float) -> None:
        """The call starts counting from its answer."""
        self._answered_at = now

    def hold(self, now: float) -> None:
        """The caller holds the call; a hold that goes on (a refresh re-INVITE) keeps its start."""
        if self._held_since is None:
            self._held_since = now

    def resume(self) -> None:
        self._held_since = None

    def held_for(self, now: float) -> float:
        return 0.0 if self._held_since is None else now - self._held_since

    def deadline(self) -> tuple[float, str]:
        """The next moment the call must end, and the end reason then."""
        end = self._answered_at + self.max_call_s
        if self._held_since is not None and self._held_since + self.hold_timeout_s < end:
            return self._held_since + self.hold_timeout_s, HOLD_TIMEOUT
        return end, MAX_CALL_DURATION

    def expired(self, now: float) -> str | None:
        """The end reason when the call must end by ``now``, else None."""
        at, reason = self.deadline()
        return reason if now >= at else None
