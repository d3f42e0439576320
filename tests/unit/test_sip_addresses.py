"""Addresses a SIP message names: what is accepted, what is refused, where a response goes.

Pure functions, so each boundary (port 0 and 65536, a 253-character name, a label of 63, a
numeric last label, brackets, a forged ``received``/``rport``) is checked directly.
"""

from __future__ import annotations

import pytest
from aiosipua import SipRequest

from gateway.sip.addresses import (
    BadAddress,
    ip_literal,
    reply_address,
    sendable,
    stamp_via,
    valid_host,
    valid_port,
)


def test_ip_literal_normalises_and_strips_brackets() -> None:
    assert ip_literal("127.0.0.1") == "127.0.0.1"
    assert ip_literal(" 127.0.0.1 ") == "127.0.0.1"
    assert ip_literal("[2001:DB8::1]") == "2001:db8::1"
    assert ip_literal("2001:db8:0::1") == "2001:db8::1"
    assert ip_literal("[127.0.0.1") is None  # one bracket is not a literal
    assert ip_literal("127.0.0.1]") is None
    assert ip_literal("example.com") is None
    assert ip_literal("") is None


def test_valid_port_bounds() -> None:
    assert valid_port(1) and valid_port(65535) and valid_port(5060)
    assert not valid_port(0)
    assert valid_port(0, allow_zero=True)
    assert not valid_port(-1, allow_zero=True)
    assert not valid_port(65536)
    assert not valid_port(65536, allow_zero=True)
    assert not valid_port("5060")
    assert not valid_port(5060.0)


def test_valid_host_names_and_literals() -> None:
    assert valid_host("127.0.0.1")
    assert valid_host("[::1]")
    assert valid_host("::1")
    assert valid_host("example.com")
    assert valid_host("example.com.")  # a trailing dot is a fully qualified name
    assert valid_host("a")
    assert valid_host("a-b.c1")
    assert valid_host("x" * 63 + ".com")
    assert not valid_host("x" * 64 + ".com")
    assert not valid_host("")
    assert not valid_host("exämple.com")
    assert not valid_host("-a.com")
    assert not valid_host("a-.com")
    assert not valid_host("a..com")
    assert not valid_host("a_b.com")
    assert not valid_host("1.2.3.999")  # numeric last label: a broken address
    assert not valid_host(".")
    # Only the one trailing dot is cut, before the labels are checked.
    assert valid_host("a.b.")
    assert not valid_host("a_b.")
    assert not valid_host("a-.")
    assert not valid_host("1.2.3.999.")
    # A zone may hold any character to ipaddress: the ASCII check keeps it off the wire.
    assert ip_literal("fe80::1%eth0") == "fe80::1%eth0"
    assert valid_host("fe80::1%eth0")
    assert not valid_host("fe80::1%\u00e9th0")


def test_valid_host_length_limit_is_253() -> None:
    label = "a" * 49
    name = ".".join([label] * 5) + ".abc"  # 5*50 + 3 = 253 characters
    assert len(name) == 253
    assert valid_host(name)
    assert valid_host(name + ".")  # the trailing dot does not count
    assert not valid_host("a" + name)


def invite(via: str, *more_vias: str) -> SipRequest:
    headers = "".join(f"Via: {v}\r\n" for v in (via, *more_vias))
    raw = (
        "INVITE sip:echo@127.0.0.1 SIP/2.0\r\n"
        f"{headers}"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\n"
        "Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    return SipRequest.parse(raw.encode())


def test_stamp_via_writes_the_packet_source_over_forged_received_and_rport() -> None:
    req = invite(
        "SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK1;received=192.0.2.66;rport=9999",
        "SIP/2.0/UDP 10.0.0.8:5080;branch=z9hG4bK0",
    )
    stamp_via(req, ("127.0.0.5", 40000))
    vias = req.headers.get("via")
    assert len(vias) == 2
    assert "192.0.2.66" not in vias[0] and "9999" not in vias[0]
    assert reply_address(vias) == ("127.0.0.5", 40000)
    assert vias[1] == "SIP/2.0/UDP 10.0.0.8:5080;branch=z9hG4bK0"  # the rest stays in order


def test_stamp_via_text_on_the_wire() -> None:
    """The forged parameters are gone, not merely shadowed: the stamped top Via carries the
    sent-by and branch, then exactly one lower-case ``received`` and ``rport``, under the
    header name ``Via`` (what a trace or a forwarded copy of the request shows)."""
    req = invite(
        "SIP/2.0/UDP 10.0.0.9:5070;rport=9999;received=192.0.2.66;branch=z9hG4bK1",
        "SIP/2.0/UDP 10.0.0.8:5080;branch=z9hG4bK0",
    )
    stamp_via(req, ("127.0.0.5", 40000))
    assert req.headers.get("via") == [
        "SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK1;received=127.0.0.5;rport=40000",
        "SIP/2.0/UDP 10.0.0.8:5080;branch=z9hG4bK0",
    ]
    wire = req.serialize()
    assert (
        "\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK1;received=127.0.0.5;rport=40000"
        "\r\nVia: SIP/2.0/UDP 10.0.0.8:5080;branch=z9hG4bK0\r\n"
    ) in wire


def test_stamp_via_without_via_does_nothing() -> None:
    raw = (
        b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\n"
        b"To: <sip:a@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    req = SipRequest.parse(raw)
    stamp_via(req, ("127.0.0.1", 5060))
    assert req.headers.get("via") == []


@pytest.mark.parametrize(
    ("via", "why"),
    [
        ("SIP/2.0/UDP exämple.com;branch=z9hG4bK1", "non-ASCII Via"),
        ("SIP/2.0/UDP bad_host;branch=z9hG4bK1", "bad Via sent-by"),
        ("SIP/2.0/UDP 10.0.0.1:70000;branch=z9hG4bK1", "bad Via sent-by"),
        ("SIP/2.0/UDP 10.0.0.1:0;branch=z9hG4bK1", "bad Via sent-by"),
        ("SIP/2.0/U@P 10.0.0.1;branch=z9hG4bK1", "bad Via transport"),
        ("SIP/2.0/ 10.0.0.1;branch=z9hG4bK1", "bad Via transport"),  # an empty transport
        ("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport=70000", "bad Via rport"),
        ("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport=0", "bad Via rport"),
        ("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport=12a", "bad Via rport"),
        ("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;maddr=bad_name", "bad Via maddr"),
        ("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK<1>", "bad Via branch"),
    ],
)
def test_stamp_via_refuses_a_malformed_top_via(via: str, why: str) -> None:
    req = invite(via)
    with pytest.raises(BadAddress, match=why) as info:
        stamp_via(req, ("127.0.0.1", 5060))
    assert str(info.value) == why  # the reason the log gives, word for word


def test_stamp_via_accepts_a_bare_rport_a_port_and_maddr() -> None:
    req = invite("SIP/2.0/UDP host.example:5070;branch=z9hG4bK1;rport;maddr=10.0.0.1")
    stamp_via(req, ("127.0.0.2", 5071))
    assert reply_address(req.headers.get("via")) == ("127.0.0.2", 5071)
    req = invite("SIP/2.0/UDP 10.0.0.1:65535;rport=65535")  # no branch: RFC 2543 peer
    stamp_via(req, ("127.0.0.2", 1))
    assert reply_address(req.headers.get("via")) == ("127.0.0.2", 1)


def test_reply_address_refuses_an_unstamped_via() -> None:
    with pytest.raises(BadAddress, match="no Via") as info:
        reply_address([])
    assert str(info.value) == "no Via"
    for via in (
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1",
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=host.example;rport=5060",
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=127.0.0.1",
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=127.0.0.1;rport=0",
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=127.0.0.1;rport=65536",
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=127.0.0.1;rport=x",
    ):
        with pytest.raises(BadAddress, match="without the source") as info:
            reply_address([via])
        assert str(info.value) == "response Via without the source it was stamped with"


def test_reply_address_reads_the_first_via_only() -> None:
    vias = [
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=127.0.0.3;rport=5062",
        "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2;received=127.0.0.4;rport=5063",
    ]
    assert reply_address(vias) == ("127.0.0.3", 5062)


def test_sendable_takes_only_an_ip_and_a_real_port() -> None:
    assert sendable(("127.0.0.1", 5060)) == ("127.0.0.1", 5060)
    assert sendable(("[::1]", 65535)) == ("::1", 65535)
    assert sendable(("127.0.0.1", 1)) == ("127.0.0.1", 1)
    for bad in (("localhost", 5060), ("127.0.0.1", 0), ("127.0.0.1", 65536), ("1.2.3.4", "5")):
        with pytest.raises(BadAddress, match="not an IP address and port"):
            sendable(bad)
    with pytest.raises(BadAddress) as info:
        sendable(("localhost", 5060))
    assert str(info.value) == "not an IP address and port: 'localhost':5060"
    with pytest.raises(BadAddress) as info:
        sendable(("x" * 500, 1))
    assert "x" * 65 not in str(info.value)  # the name is cut in the message
