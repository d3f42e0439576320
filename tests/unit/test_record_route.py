"""A proxy that record-routes (Kamailio) stays in the dialog: our 1xx/2xx to the INVITE copy its
Record-Route (RFC 3261 §12.1.1) so the caller's ACK and BYE come back through it, and our own
BYE carries the route set as Route headers, in the same order (a UAS does not reverse it)."""

from __future__ import annotations

from aiosipua import SipResponse

from .test_session_refresh import answered_call

PROXIES = (
    "Record-Route: <sip:10.0.0.2:5061;transport=tls;lr>",
    "Record-Route: <sip:10.0.0.1;lr;r2=on>, <sip:10.0.0.1:5061;transport=tls;lr;r2=on>",
)


async def test_the_answer_copies_record_route_and_our_bye_follows_the_route_set() -> None:
    uas, wire, call, _ = await answered_call(*PROXIES)
    answers = [m for m in wire.sent if isinstance(m, SipResponse) and m.status_code > 100]
    assert answers and all(a.status_code in (180, 200) for a in answers)
    copied = [
        route.strip()
        for answer in answers[-1:]
        for value in answer.headers.get("record-route")
        for route in value.split(",")
    ]
    assert copied == [
        "<sip:10.0.0.2:5061;transport=tls;lr>",
        "<sip:10.0.0.1;lr;r2=on>",
        "<sip:10.0.0.1:5061;transport=tls;lr;r2=on>",
    ]
    uas.send_bye(call)
    [bye] = wire.requests("BYE")
    routes = [r.strip() for value in bye.headers.get("route") for r in value.split(",")]
    assert routes == copied, routes  # a UAS keeps their order: the nearest proxy first
    uas.refreshes.close()


async def test_no_record_route_without_one_in_the_invite() -> None:
    uas, wire, _, _ = await answered_call()
    assert all(not m.headers.get("record-route") for m in wire.sent)
    uas.refreshes.close()
