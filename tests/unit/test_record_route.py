"""A proxy that record-routes (Kamailio) stays in the dialog: our 1xx/2xx to the INVITE copy its
Record-Route (RFC 3261 §12.1.1) so the caller's ACK and BYE come back through it, and our own
BYE carries the route set as Route headers, in the same order (a UAS does not reverse it)."""

from __future__ import annotations

import ssl

import pytest
from aiosipua import SipRequest, SipResponse

from gateway.sip.outgoing import OutgoingRequests
from gateway.sip.tls_transport import TlsTransport
from gateway.sip.transactions import SipTimers
from gateway.sip.transport import Message, Source

from .test_session_refresh import PEER, answered_call

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


class TlsWire(TlsTransport):
    """A TLS listener whose call connection is gone: what it would reconnect to is kept."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 5061), ssl.create_default_context())
        self.reconnects: list[tuple[str, Source, str]] = []

    def send_reconnecting(self, message: Message, addr: Source, remote_target: str) -> None:
        method = message.method if isinstance(message, SipRequest) else "response"
        self.reconnects.append((method, addr, remote_target))


@pytest.mark.parametrize(
    ("record_route", "target"),
    [
        (PROXIES, "sip:10.0.0.2:5061;transport=tls;lr"),  # the nearest proxy
        (('Record-Route: "edge" <sip:10.0.0.9:5062;transport=tls;lr>',), "sip:10.0.0.9:5062"),
        ((), "sip:caller@127.0.0.1:5070"),  # no proxy: the caller's Contact
    ],
)
async def test_a_tls_bye_reconnects_to_the_nearest_proxy_parsed_not_cut(
    record_route: tuple[str, ...], target: str
) -> None:
    uas, _, call, _ = await answered_call(*record_route)
    wire = TlsWire()
    OutgoingRequests(wire, SipTimers(), "t").send_bye(call)
    [(method, addr, reconnect_to)] = wire.reconnects
    assert (method, addr) == ("BYE", PEER)  # the IP the call came from, whatever the URI says
    assert reconnect_to.startswith(target)
    uas.refreshes.close()


async def test_a_route_set_that_is_not_a_sip_uri_falls_back_to_the_contact() -> None:
    uas, _, call, _ = await answered_call()
    call.dialog.route_set = ["<sip:10.0.0.2:99999;lr>"]  # never accepted from an INVITE
    wire = TlsWire()
    OutgoingRequests(wire, SipTimers(), "t").send_bye(call)
    assert wire.reconnects[0][2] == "sip:caller@127.0.0.1:5070"
    uas.refreshes.close()
