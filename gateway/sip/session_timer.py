"""Session timers (RFC 4028), the UAS side: what to answer, and who refreshes.

Plain functions over a request's headers; the UAS (in_dialog.py) arms aiosipua's `SessionTimer`
with the result: a refresh every half interval when we refresh, else a watchdog that ends the
call when the caller's refreshes stop (§10: before the expiry minus min(32, interval/3)).

Owned here rather than taken from aiosipua's `SipUAS`: a caller that names no interval but
supports timers gets ours, the caller's Min-SE is honoured, only a caller that says nothing
about timers is left alone, and UPDATE is used only when the caller's Allow lists it (RFC 3311:
an absent Allow says nothing); otherwise we refresh with a re-INVITE, never by giving the role
back to a caller that did not ask for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiosipua import SipMessage
from aiosipua.headers import _PRETTY_NAMES

# aiosipua writes unknown names title-cased ("Min-Se"); SIP names are case-insensitive, but
# SIPp, and peers as literal as it, look for RFC 4028's spelling.
_PRETTY_NAMES.setdefault("min-se", "Min-SE")

SESSION_TIMER_EXPIRED = "session_timer_expired"  # end reason: the caller stopped refreshing
MAX_INTERVAL_S = 86_400  # a caller's Session-Expires beyond a day is reduced to it (§9 allows)

Refresher = Literal["uac", "uas"]


@dataclass(frozen=True, slots=True)
class TimerPolicy:
    """Our side of the negotiation (sip.session_timers)."""

    expires_s: int = 1800
    min_se_s: int = 90
    refresher: Refresher = "uas"


@dataclass(frozen=True, slots=True)
class Negotiated:
    """A session timer in force. ``refresher`` names a role in the transaction that set it
    (§4: "uac" is whoever sent that request), so ``role`` says which one we had there: "uas"
    for a request of the caller's we answered, "uac" for a refresh of ours it answered."""

    interval: int  # seconds
    refresher: Refresher
    require: bool  # the 2xx carries Require: timer (the caller supports timers)
    role: Refresher = "uas"

    @property
    def we_refresh(self) -> bool:
        return self.refresher == self.role

    @property
    def in_our_request(self) -> str:
        """Session-Expires in a request of ours (a refresh, a re-INVITE): we are its UAC, so
        "uac" when we go on refreshing, else "uas" (pjsip, Asterisk read it so)."""
        return f"{self.interval};refresher={'uac' if self.we_refresh else 'uas'}"

    def headers(self) -> dict[str, str]:
        """What our 2xx to the peer's refresh (or INVITE) carries (§9): we are its UAS."""
        refresher = "uas" if self.we_refresh else "uac"
        out = {"Session-Expires": f"{self.interval};refresher={refresher}"}
        if self.require:
            out["Require"] = "timer"
        return out


class IntervalTooSmall(Exception):
    """The caller asked for less than our Min-SE: 422 with `min_se`."""

    def __init__(self, asked: int, min_se: int) -> None:
        super().__init__(f"Session-Expires {asked} is below our Min-SE {min_se}")
        self.asked, self.min_se = asked, min_se


def tokens(message: SipMessage, *names: str) -> set[str]:
    """The comma-separated option tags of these headers, lower-case."""
    return {
        token.strip().lower()
        for name in names
        for value in message.headers.get(name)
        for token in value.split(",")
        if token.strip()
    }


def _seconds(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 10 else None


def parse_session_expires(raw: str) -> tuple[int | None, Refresher | None]:
    """`1800;refresher=uac` -> (1800, "uac"); an unreadable interval -> None, an unknown
    refresher -> None."""
    interval, *params = raw.split(";")
    refresher: Refresher | None = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "refresher":
            value = value.strip().lower()
            refresher = "uac" if value == "uac" else "uas" if value == "uas" else None
    return _seconds(interval), refresher


def _header(message: SipMessage, name: str, compact: str | None = None) -> str | None:
    value = message.headers.get_first(name)
    if value is None and compact is not None:
        value = message.headers.get_first(compact)
    return value


def min_se(message: SipMessage) -> int:
    """The Min-SE a peer names, in seconds (a request's, or a 422's: §7.3); 0 when it names
    none or none readable (ten digits at most)."""
    raw = _header(message, "min-se")
    return (_seconds(raw.split(";")[0]) or 0) if raw is not None else 0


def negotiate(request: SipMessage, policy: TimerPolicy) -> Negotiated | None:
    """The session timer for an INVITE (or a refresh) we accept; None when the caller asks
    for none. Raises IntervalTooSmall (-> 422) when its Session-Expires is below our Min-SE."""
    supports = "timer" in tokens(request, "supported", "require")
    raw = _header(request, "session-expires", "x")
    interval, refresher = parse_session_expires(raw) if raw is not None else (None, None)
    if interval is None and not supports:
        return None  # no timer asked, and none the caller would understand
    peer_min = min(min_se(request), MAX_INTERVAL_S)
    if interval is not None:
        if interval < policy.min_se_s:
            raise IntervalTooSmall(interval, policy.min_se_s)
        interval = min(interval, MAX_INTERVAL_S)
    else:
        interval = max(policy.expires_s, peer_min)
    if not supports:
        refresher = "uas"  # §9: a caller without timer support cannot refresh
    elif refresher is None:
        refresher = policy.refresher
    return Negotiated(interval, refresher, require=supports)


def answered(response: SipMessage, min_se_s: int) -> Negotiated | None:
    """The session timer the 2xx to our INVITE put in force (§7.2): none without a
    Session-Expires; its refresher names a role in our INVITE's transaction, "uac" us, and
    is "uac" when missing (the UAS must name it; pjsip reads a missing one so too)."""
    raw = _header(response, "session-expires", "x")
    if raw is None:
        return None
    interval, refresher = parse_session_expires(raw)
    if interval is None or interval < 1:
        return None
    return Negotiated(bounded(interval, min_se_s), refresher or "uac", True, role="uac")


def bounded(interval: int, min_se_s: int) -> int:
    """A peer's interval in a 2xx, within our Min-SE and a day: §5 forbids it below the
    Min-SE we sent, and one of a second would have us refresh twice a second."""
    return min(max(interval, min_se_s), MAX_INTERVAL_S)


def allows(message: SipMessage, method: str) -> bool:
    """Whether the message's Allow lists `method` (an absent Allow lists nothing)."""
    return method.lower() in tokens(message, "allow")
