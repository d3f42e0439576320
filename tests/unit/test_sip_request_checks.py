"""`request_problem` answer by answer: each RFC 3261 §8.2 / RFC 4475 check gets the status,
reason phrase and headers a caller will see, and a valid request gets None.

The fuzz tests prove the check never raises; these prove it says the right thing.
"""

from __future__ import annotations

import pytest
from aiosipua import SipRequest
from aiosipua.dialog import Dialog

from gateway.sip.validate import (
    MAX_CSEQ,
    MAX_ROUTES,
    SUPPORTED,
    first_route,
    remote_target,
    request_problem,
    retarget,
)

HEADERS = [
    ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1"),
    ("From", "<sip:caller@127.0.0.1>;tag=abc"),
    ("To", "<sip:echo@127.0.0.1>"),
    ("Call-ID", "1@127.0.0.1"),
    ("CSeq", "1 INVITE"),
    ("Contact", "<sip:caller@127.0.0.1:5070>"),
    ("Max-Forwards", "70"),
]


def build(
    method: str = "INVITE",
    uri: str = "sip:echo@127.0.0.1",
    *,
    replace: dict[str, str | None] | None = None,
    add: list[tuple[str, str]] = (),
    body: str = "",
) -> SipRequest:
    replace = replace or {}
    lines = [f"{method} {uri} SIP/2.0"]
    for name, value in HEADERS:
        if name in replace:
            value = replace[name]
            if value is None:
                continue
        if name == "CSeq" and "CSeq" not in replace:
            value = f"1 {method}"
        lines.append(f"{name}: {value}")
    lines += [f"{n}: {v}" for n, v in add]
    lines.append(f"Content-Length: {len(body.encode())}")
    return SipRequest.parse(("\r\n".join(lines) + "\r\n\r\n" + body).encode())


def test_a_valid_request_has_no_problem() -> None:
    assert request_problem(build()) is None
    assert request_problem(build("OPTIONS", replace={"Contact": None})) is None
    assert request_problem(build(uri="sips:echo@127.0.0.1")) is None
    assert request_problem(build(uri="tel:+15551234")) is None
    assert request_problem(build(uri="SIP:echo@127.0.0.1")) is None  # schemes are caseless


@pytest.mark.parametrize(
    ("name", "phrase"),
    [("Call-ID", "Missing Call-ID"), ("CSeq", "Missing CSeq"), ("From", "Missing From")],
)
def test_a_missing_header_is_named(name: str, phrase: str) -> None:
    assert request_problem(build(replace={name: None})) == (400, phrase, {})


def test_every_missing_header_is_named() -> None:
    request = build(replace={"Call-ID": None, "CSeq": None})
    assert request_problem(request) == (400, "Missing Call-ID, CSeq", {})


def test_a_method_that_is_not_a_token() -> None:
    request = build()
    request.method = "INV;TE"
    assert request_problem(request) == (400, "Bad Request Line", {})
    request.method = ""
    assert request_problem(request) == (400, "Bad Request Line", {})


@pytest.mark.parametrize(
    ("cseq", "phrase"),
    [
        ("x INVITE", "Bad CSeq"),
        ("1", "Bad CSeq"),
        ("1 INVITE extra", "Bad CSeq"),
        (f"{MAX_CSEQ} INVITE", "Bad CSeq"),
        ("1 BYE", "CSeq Method Does Not Match"),
    ],
)
def test_cseq_checks(cseq: str, phrase: str) -> None:
    assert request_problem(build(replace={"CSeq": cseq})) == (400, phrase, {})


def test_the_largest_cseq_is_accepted() -> None:
    assert MAX_CSEQ == 2**31
    assert request_problem(build(replace={"CSeq": f"{MAX_CSEQ - 1} INVITE"})) is None


def test_content_length_checks() -> None:
    request = build(body="v=0\r\n")
    assert request_problem(request) is None
    request.headers.set_single("Content-Length", "x1")
    assert request_problem(request) == (400, "Bad Content-Length", {})
    request.headers.set_single("Content-Length", " 5 ")
    assert request_problem(request) is None  # exactly the body
    request.headers.set_single("Content-Length", "6")
    assert request_problem(request) == (400, "Content-Length Larger Than Message", {})
    request.headers.remove("Content-Length")
    assert request_problem(request) is None


@pytest.mark.parametrize(("header", "phrase"), [("From", "Bad From"), ("To", "Bad To")])
def test_an_address_without_host(header: str, phrase: str) -> None:
    assert request_problem(build(replace={header: "<sip:>"})) == (400, phrase, {})


@pytest.mark.parametrize(
    "contact",
    [
        "<sip:caller@bad_host>",
        "<sip:caller@127.0.0.1:70000>",
        "<http://127.0.0.1>",
        "<sip:caller@exämple.com>",
    ],
)
def test_a_dialog_creating_request_needs_a_sound_contact(contact: str) -> None:
    for method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER"):
        assert request_problem(build(method, replace={"Contact": contact})) == (
            400,
            "Bad Contact",
            {},
        )
    assert request_problem(build("OPTIONS", replace={"Contact": contact})) is None
    assert request_problem(build("BYE", replace={"Contact": contact})) is None


def test_two_contacts_are_refused_in_an_invite() -> None:
    request = build(add=[("Contact", "<sip:b@127.0.0.1>")])
    assert request_problem(request) == (400, "Bad Contact", {})


def test_an_invite_without_contact_is_tolerated() -> None:
    assert request_problem(build(replace={"Contact": None})) is None


def test_max_forwards_must_be_a_number() -> None:
    assert request_problem(build(replace={"Max-Forwards": "seventy"})) == (
        400,
        "Bad Max-Forwards",
        {},
    )
    assert request_problem(build(replace={"Max-Forwards": " 0 "})) is None
    assert request_problem(build(replace={"Max-Forwards": None})) is None


def test_duplicate_call_id_or_cseq() -> None:
    request = build(add=[("Call-ID", "2@127.0.0.1")])
    assert request_problem(request) == (400, "Duplicate Call-ID or CSeq", {})
    request = build(add=[("CSeq", "1 INVITE")])
    assert request_problem(request) == (400, "Duplicate Call-ID or CSeq", {})


def test_an_unknown_scheme_is_416() -> None:
    assert request_problem(build(uri="http://127.0.0.1/")) == (416, "Unsupported URI Scheme", {})


def test_require_of_an_unknown_extension_is_420_with_unsupported() -> None:
    assert SUPPORTED == {"100rel", "timer"}
    request = build(add=[("Require", "timer, 100rel"), ("Require", " ")])
    assert request_problem(request) is None
    request = build(add=[("Require", "Foo, timer,bar"), ("Require", "100REL")])
    assert request_problem(request) == (420, "Bad Extension", {"Unsupported": "bar, foo"})
    for method in ("ACK", "CANCEL"):  # never answered with 420 (§8.2.2.3)
        request = build(method, add=[("Require", "foo")], replace={"Contact": None})
        assert request_problem(request) is None


def test_remote_target_is_the_one_well_formed_contact() -> None:
    assert remote_target(build()) == "sip:caller@127.0.0.1:5070"
    assert remote_target(build(replace={"Contact": "<sips:caller@[::1]>"})) == "sips:caller@[::1]"
    assert remote_target(build(replace={"Contact": None})) is None
    assert remote_target(build(add=[("Contact", "<sip:b@127.0.0.1>")])) is None
    assert remote_target(build(replace={"Contact": "<http://127.0.0.1/>"})) is None
    assert remote_target(build(replace={"Contact": "<sip:a@127.0.0.1:0>"})) is None
    assert remote_target(build(replace={"Contact": "<sip:a@127.0.0.1:65535>"})) is not None


def test_retarget_moves_the_dialog_only_for_a_good_contact() -> None:
    dialog = Dialog(call_id="1", local_tag="a", remote_tag="b", remote_target="sip:old@127.0.0.1")
    retarget(dialog, build(replace={"Contact": "<sip:bad_host>"}))
    assert dialog.remote_target == "sip:old@127.0.0.1"
    retarget(dialog, build(replace={"Contact": "<sip:new@127.0.0.2:5080>"}))
    assert dialog.remote_target == "sip:new@127.0.0.2:5080"


KAMAILIO = "<sip:10.0.0.1;lr;r2=on>, <sip:10.0.0.1:5061;transport=tls;lr;r2=on>"


@pytest.mark.parametrize(
    "values",
    [
        [KAMAILIO],
        [KAMAILIO, "<sip:10.0.0.2:5061;transport=tls;lr>"],
        ['"edge, west" <sip:proxy.example.com;lr>'],  # a comma inside quotes is not a split
        ["<sips:[2001:db8::1]:5061;lr>"],
        [", ".join(["<sip:10.0.0.1;lr>"] * MAX_ROUTES)],
    ],
)
def test_a_proxy_chain_record_route_is_accepted(values: list[str]) -> None:
    add = [("Record-Route", value) for value in values]
    assert request_problem(build(add=add)) is None


@pytest.mark.parametrize(
    "value",
    [
        ", ".join(["<sip:10.0.0.1;lr>"] * (MAX_ROUTES + 1)),  # too many proxies
        f"<sip:{'a' * 5000}.example;lr>",  # too long
        "<sip:10.0.0.1;lr",  # unclosed
        "garbage",
        "sip:10.0.0.1;lr",  # an addr-spec: Record-Route is a name-addr (RFC 3261 §20.30)
        "<tel:+15550100>",
        "<sip:10.0.0.1:70000;lr>",
        "<sip:bad_host!;lr>",
        "<sip:10.0.0.1;lr>, <sip:h\u00f6st;lr>",
        "<sip:10.0.0.1;lr>,,<sip:10.0.0.2;lr>",  # an empty entry
    ],
)
def test_a_hostile_record_route_in_an_invite_is_400(value: str) -> None:
    problem = request_problem(build(add=[("Record-Route", value)]))
    assert problem == (400, "Bad Record-Route", {})


def test_record_route_is_only_checked_where_it_makes_a_dialog() -> None:
    # In-dialog requests may carry one; it is never used, so it is never refused.
    request = build("OPTIONS", replace={"Contact": None}, add=[("Record-Route", "garbage")])
    assert request_problem(request) is None


@pytest.mark.parametrize(
    ("route_set", "first"),
    [
        ([KAMAILIO], "sip:10.0.0.1;lr;r2=on"),
        (['"p" <sip:10.0.0.2:5061;transport=tls;lr>'], "sip:10.0.0.2:5061;transport=tls;lr"),
        ([], None),
        (["garbage"], None),
        (["<sip:10.0.0.1:99999;lr>"], None),
        (["<sip:evil", "<sip:10.0.0.1;lr>"], None),  # the nearest proxy or none, never a later one
    ],
)
def test_first_route_is_the_nearest_proxy_when_well_formed(
    route_set: list[str], first: str | None
) -> None:
    assert first_route(route_set) == first


@pytest.mark.parametrize("error", [ValueError("bad"), IndexError("bad")])
def test_an_address_the_parser_cannot_read_is_named(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """aiosipua's parse_address does not raise today; if a version does, the request still
    gets its 400 naming the header, never an exception."""
    from gateway.sip import validate

    def unreadable(text: str) -> None:
        raise error

    monkeypatch.setattr(validate, "parse_address", unreadable)
    assert request_problem(build()) == (400, "Bad From", {})
