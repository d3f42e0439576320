"""The SIP answers the gateway gives a call it does not take: one table, one exception.

A setup failure carries its SIP status the way h11's errors carry ``error_status_hint``: the
code that finds the failure names it (`SetupFailed`), and `SETUP_FAILURES` is the one place
where a failure's name becomes a SIP status (the answer sent, the record's ``sip_status``, the
metric's label). `PHRASES` gives every status the gateway refuses with its reason phrase.
"""

from __future__ import annotations

from typing import Any, Literal

RETRY_AFTER_S = 5  # what a full or draining gateway asks a PBX to wait before retrying

PHRASES = {
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    482: "Loop Detected",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
}

# A call that could not be set up: its end reason (and metric label) -> the SIP status it gets.
SETUP_FAILURES = {
    "not_acceptable": 488,  # no codec, SRTP or address in the offer we can use
    "no_rtp_port": 503,  # media.rtp_port_min..max all taken
    "realtime_unavailable": 503,  # the Realtime session could not be opened
}
SETUP_REJECTIONS = tuple(SETUP_FAILURES)
# The final response an unanswered call got, by its end reason: a record's sip_status.
FINAL_STATUS = {
    **SETUP_FAILURES,
    "caller_cancel": 487,  # 487 to a CANCELled INVITE (§9.2)
    "failover_redirect": 302,  # realtime.failover: sent to a human instead of a 503
    "internal_error": 500,  # a bug before the answer: 500 (call.failed), never silence
}
INTERNAL_ERROR = FINAL_STATUS["internal_error"]  # anything else that fails before the answer
REFUSALS = ("unauthorized", "auth_blocked", "draining", "max_calls")  # admission's labels


class SetupFailed(Exception):
    """The call cannot be answered; `status` is the SIP final response it gets.

    `detail` goes into the ``call.rejected`` log line (never a secret), `fields` too.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        retry_after: int | None = None,
        level: Literal["warning", "error"] = "error",
        **fields: Any,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = SETUP_FAILURES[reason]
        self.detail = detail
        self.retry_after = retry_after
        self.level = level
        self.fields = fields

    @property
    def phrase(self) -> str:
        return PHRASES[self.status]
