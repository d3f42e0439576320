"""The SIP parse path, from bytes to the UAS, never raises and never keeps state for junk.

Property-based (hypothesis): random bytes and mutated real INVITEs go through the real
transport dispatch, validation and UAS handlers; only the socket is replaced by a list.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from aiosipua import IncomingCall, SipMessage, SipRequest, SipResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gateway.sip.answer import reject
from gateway.sip.door import Door
from gateway.sip.transport import parse_datagram
from gateway.sip.uas import GatewayUAS
from gateway.sip.udp import UdpTransport
from gateway.sip.validate import request_problem

INVITE = (
    b"INVITE sip:echo@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-1;rport\r\n"
    b"From: caller <sip:caller@127.0.0.1:5070>;tag=abc\r\n"
    b"To: <sip:echo@127.0.0.1:5060>\r\n"
    b"Call-ID: 1@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:caller@127.0.0.1:5070>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 87\r\n\r\n"  # a valid INVITE: mutations start from it
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


class Wire(UdpTransport):
    """The real UDP transport's dispatch, with sends kept in a list instead of a socket."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 5060), Door([ipaddress.ip_network("127.0.0.0/8")]))
        self.sent: list[tuple[SipRequest | SipResponse, tuple[str, int]]] = []

    def send_to(self, data: bytes | SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        message = SipMessage.parse(data if isinstance(data, bytes) else bytes(data))
        self.sent.append((message, addr))

    def _dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        self._received(data, addr)


def uas() -> tuple[GatewayUAS, Wire]:
    wire = Wire()
    server = GatewayUAS(wire, user_agent="test")
    wire.on_message = server._on_message

    def refuse(call: IncomingCall) -> None:
        reject(call, 486, "Busy Here")
        server.forget(call)

    server.on_invite = refuse
    return server, wire


def truncate(data: bytes, at: int) -> bytes:
    return data[: max(at, 1)]


def insert(data: bytes, at: int, junk: bytes) -> bytes:
    return data[:at] + junk + data[at:]


def drop_line(data: bytes, index: int) -> bytes:
    lines = data.split(b"\r\n")
    del lines[index % len(lines)]
    return b"\r\n".join(lines)


def bad_value(data: bytes, index: int, value: bytes) -> bytes:
    """A header whose value went bad (index 1-9: the INVITE's headers)."""
    lines = data.split(b"\r\n")
    index %= len(lines)
    lines[index] = lines[index].split(b":", 1)[0] + b": " + value
    return b"\r\n".join(lines)


JUNK = st.binary(max_size=30) | st.text('0123456789 .;=<>:@-abcINVITEACK"', max_size=30).map(
    str.encode
)
MUTATION = st.one_of(
    st.builds(lambda at: lambda d: truncate(d, at), st.integers(0, len(INVITE))),
    st.builds(lambda at, j: lambda d: insert(d, at, j), st.integers(0, len(INVITE)), JUNK),
    st.builds(lambda i: lambda d: drop_line(d, i), st.integers(0, 16)),
    st.builds(lambda i, v: lambda d: bad_value(d, i, v), st.integers(1, 9), JUNK),
)


async def _feed(messages: list[bytes]) -> GatewayUAS:
    """Dispatch as the socket would; a handler that raised (the transport logs and survives
    it as sip.handler_failed) fails the test."""
    server, wire = uas()
    with capture_logs() as logs:
        for data in messages:
            wire._dispatch(data, ("127.0.0.1", 5070))
    for txn in server.invites.all():  # no timers left running after the example
        if txn.timer is not None:
            txn.timer.cancel()
    failed = [e for e in logs if e["event"] == "sip.handler_failed"]
    assert not failed, failed
    return server


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=1500), max_size=4))
def test_random_bytes_never_raise_nor_create_calls(messages: list[bytes]) -> None:
    server = asyncio.run(_feed(messages))
    assert not server._calls


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_invites_never_raise_and_leave_no_call(mutations: list[Any]) -> None:
    data = INVITE
    for mutation in mutations:
        data = mutation(data)
    server = asyncio.run(_feed([data, data]))  # and its retransmission
    assert not server._calls
    try:
        parsed = parse_datagram(data)
    except ValueError:
        return
    message = parsed[0] if parsed else None
    if isinstance(message, SipRequest):
        request_problem(message)  # total: an answer or None, never an exception


@pytest.mark.parametrize(
    ("header", "status"),
    [(b"Call-ID", 400), (b"CSeq", 400), (b"From", 400), (b"To", 400)],
)
async def test_missing_mandatory_header_gets_400(header: bytes, status: int) -> None:
    lines = [line for line in INVITE.split(b"\r\n") if not line.startswith(header + b":")]
    server, wire = uas()
    wire._dispatch(b"\r\n".join(lines), ("127.0.0.1", 5070))
    (response, addr), *_ = wire.sent
    assert isinstance(response, SipResponse) and response.status_code == status
    assert addr == ("127.0.0.1", 5070)  # the packet's source, whatever its Via says
    assert not server._calls


async def test_missing_via_gets_no_answer() -> None:
    lines = [line for line in INVITE.split(b"\r\n") if not line.startswith(b"Via:")]
    server, wire = uas()
    wire._dispatch(b"\r\n".join(lines), ("127.0.0.1", 5070))
    assert wire.sent == [] and not server._calls


async def test_a_full_transaction_table_answers_503_without_state() -> None:
    server, wire = uas()
    server.invites.max_size = 3
    for i in range(5):
        data = INVITE.replace(b"branch=z9hG4bK-1-1", f"branch=z9hG4bK-t{i}".encode())
        wire._dispatch(data.replace(b"Call-ID: 1@", f"Call-ID: {i}@".encode()), ("127.0.0.1", 5070))
    finals = [m.status_code for m, _ in wire.sent if isinstance(m, SipResponse)]
    assert finals.count(486) == 3 and finals.count(503) == 2
    assert len(server.invites) == 3  # the two refused for room left nothing behind
    for txn in server.invites.all():
        if txn.timer is not None:
            txn.timer.cancel()


async def test_an_ack_finds_its_transaction_among_thousands_by_lookup() -> None:
    server, wire = uas()
    for i in range(2000):
        data = INVITE.replace(b"branch=z9hG4bK-1-1", f"branch=z9hG4bK-t{i}".encode())
        wire._dispatch(data.replace(b"Call-ID: 1@", f"Call-ID: {i}@".encode()), ("127.0.0.1", 5070))
    assert len(server.invites) == 2000
    ack = (
        INVITE.split(b"Content-Type")[0]
        .replace(b"INVITE sip", b"ACK sip")
        .replace(b"1 INVITE", b"1 ACK")
        .replace(b"branch=z9hG4bK-1-1", b"branch=z9hG4bK-t1234")
        .replace(b"Call-ID: 1@", b"Call-ID: 1234@")
        + b"Content-Length: 0\r\n\r\n"
    )
    wire._dispatch(ack, ("127.0.0.1", 5070))
    assert len(server.invites) == 2000  # confirmed, lingering to absorb retransmissions
    (txn,) = server.invites.of_call("1234@127.0.0.1")
    assert txn.state.value == "confirmed"
    for txn in server.invites.all():
        if txn.timer is not None:
            txn.timer.cancel()


def test_options_get_200_with_capabilities_and_503_while_unavailable() -> None:
    """The PBX's health check: 200 with Allow and Accept (and our User-Agent), 503 with
    Retry-After while the gateway is draining or full."""
    server, wire = uas()
    options = (
        INVITE.split(b"Content-Type")[0]
        .replace(b"INVITE sip:", b"OPTIONS sip:")
        .replace(b"1 INVITE", b"1 OPTIONS")
        + b"Content-Length: 0\r\n\r\n"
    )
    wire._dispatch(options, ("127.0.0.1", 5070))
    [(answer, addr)] = wire.sent
    assert isinstance(answer, SipResponse) and addr == ("127.0.0.1", 5070)
    assert answer.status_code == 200
    allow = {m.strip() for value in answer.headers.get("allow") for m in value.split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO"} <= allow
    assert answer.get_header("accept") == "application/sdp"
    assert answer.get_header("user-agent") == "test"
    server.unavailable = lambda: True
    wire._dispatch(options.replace(b"z9hG4bK-1-1", b"z9hG4bK-1-2"), ("127.0.0.1", 5070))
    answer = wire.sent[-1][0]
    assert isinstance(answer, SipResponse)
    assert (answer.status_code, answer.get_header("retry-after")) == (503, "5")
