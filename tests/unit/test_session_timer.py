"""Session-timer negotiation (RFC 4028 §9), as the UAS answers an INVITE or a refresh."""

from __future__ import annotations

import pytest
from aiosipua import SipMessage, SipRequest

from gateway.sip.session_timer import (
    MAX_INTERVAL_S,
    IntervalTooSmall,
    Negotiated,
    TimerPolicy,
    allows,
    negotiate,
    parse_session_expires,
)

POLICY = TimerPolicy(expires_s=1800, min_se_s=90, refresher="uas")


def request(*headers: tuple[str, str]) -> SipRequest:
    req = SipRequest(method="INVITE", uri="sip:agent@127.0.0.1")
    for name, value in headers:
        req.headers.append(name, value)
    return req


def test_parse_session_expires() -> None:
    assert parse_session_expires("1800;refresher=uac") == (1800, "uac")
    assert parse_session_expires(" 90 ; Refresher = UAS ") == (90, "uas")
    assert parse_session_expires("600") == (600, None)
    assert parse_session_expires("600;refresher=proxy") == (600, None)
    assert parse_session_expires("abc;refresher=uac") == (None, "uac")
    assert parse_session_expires("-5") == (None, None)
    assert parse_session_expires("9" * 40) == (None, None)  # no giant int from the network


def test_no_timer_without_session_expires_or_support() -> None:
    assert negotiate(request(), POLICY) is None
    assert negotiate(request(("Supported", "100rel, replaces")), POLICY) is None


def test_the_callers_interval_and_refresher_are_obeyed() -> None:
    got = negotiate(
        request(("Supported", "100rel, timer"), ("Session-Expires", "600;refresher=uac")), POLICY
    )
    assert got == Negotiated(600, "uac", require=True)
    assert not got.we_refresh
    assert got.headers() == {"Session-Expires": "600;refresher=uac", "Require": "timer"}


def test_support_without_interval_gets_ours_and_our_refresher() -> None:
    got = negotiate(request(("Supported", "timer")), POLICY)
    assert got == Negotiated(1800, "uas", require=True)
    uac = negotiate(request(("Supported", "timer")), TimerPolicy(1800, 90, "uac"))
    assert uac is not None and uac.refresher == "uac"


def test_the_callers_min_se_raises_our_interval() -> None:
    got = negotiate(request(("Supported", "timer"), ("Min-SE", "3600")), POLICY)
    assert got is not None and got.interval == 3600


def test_a_caller_without_timer_support_never_refreshes() -> None:
    """§9 table: Session-Expires inserted by a proxy, the caller lacks `timer`: we refresh,
    and no Require: timer (the caller would refuse what it does not know)."""
    got = negotiate(request(("Session-Expires", "1200;refresher=uac")), POLICY)
    assert got == Negotiated(1200, "uas", require=False)
    assert got.headers() == {"Session-Expires": "1200;refresher=uas"}


def test_below_our_min_se_is_422() -> None:
    with pytest.raises(IntervalTooSmall) as exc:
        negotiate(request(("Supported", "timer"), ("Session-Expires", "60")), POLICY)
    assert exc.value.min_se == 90 and exc.value.asked == 60


def test_compact_form_and_huge_intervals() -> None:
    raw = (
        "INVITE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa\r\n"
        "f: <sip:a@127.0.0.1>;tag=1\r\nt: <sip:agent@127.0.0.1>\r\ni: c1\r\n"
        "CSeq: 1 INVITE\r\nk: timer\r\nx: 999999999;refresher=uac\r\nl: 0\r\n\r\n"
    )
    message = SipMessage.parse(raw.encode())
    got = negotiate(message, POLICY)
    assert got == Negotiated(MAX_INTERVAL_S, "uac", require=True)


def test_allows_needs_the_method_listed() -> None:
    assert allows(request(("Allow", "INVITE, ACK, BYE, UPDATE")), "UPDATE")
    assert allows(request(("Allow", "INVITE,ACK"), ("Allow", "update")), "UPDATE")
    assert not allows(request(("Allow", "INVITE, ACK, BYE")), "UPDATE")
    assert not allows(request(), "UPDATE")  # RFC 3311: no Allow, no UPDATE


def test_min_se_is_written_as_rfc_4028_spells_it() -> None:
    from aiosipua import SipResponse

    response = SipResponse(status_code=422, reason_phrase="Session Interval Too Small")
    response.headers.set_single("Min-SE", "90")
    assert b"\r\nMin-SE: 90\r\n" in bytes(response)


def test_the_refresher_is_written_in_the_terms_of_each_transaction() -> None:
    """One timer, two directions: we refresh (set by the caller's INVITE, or by the 2xx to a
    refresh of ours); our 2xx to the caller's request says "uas", our own request "uac"."""
    for timer in (Negotiated(600, "uas", True), Negotiated(600, "uac", True, role="uac")):
        assert timer.we_refresh
        assert timer.headers()["Session-Expires"] == "600;refresher=uas"
        assert timer.in_our_request == "600;refresher=uac"
    for timer in (Negotiated(600, "uac", True), Negotiated(600, "uas", True, role="uac")):
        assert not timer.we_refresh
        assert timer.headers()["Session-Expires"] == "600;refresher=uac"
        assert timer.in_our_request == "600;refresher=uas"
