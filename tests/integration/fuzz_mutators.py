"""Seeded mutators for SIP, SDP and RTP, for the socket fuzzer (test_fuzz_sockets.py).

Everything here is plain and deterministic: a `random.Random` goes in, bytes come out, so a
failing input can be rebuilt from the seed and its index. The corpus is a PBX's everyday
traffic (INVITE with SDP, ACK, BYE, CANCEL, OPTIONS, REGISTER, re-INVITE, INFO); the
mutations are what broken and hostile peers send: odd Via parameters, lying Content-Length
and CSeq, folded and duplicated headers, NUL and non-ASCII bytes, truncation, SDP with
strange c=/m= lines, rtpmap and huge numbers, and RTP with every header bit turned.

Every address a mutation writes is one of ``Addresses``: loopback sentinels the test
listens on (the third party) and non-loopback literals (TEST-NET, never routed) or names
under ``.invalid``, so "nothing outside loopback was sent" can be checked on what the
gateway sends.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

CRLF = "\r\n"


@dataclass(frozen=True)
class Addresses:
    """Where a mutated message may point the gateway."""

    third_party: str  # a loopback address of the test's (127.0.0.3) listening on these ports
    third_party_sip: int
    third_party_rtp: int
    foreign: tuple[str, ...] = ("192.0.2.1", "198.51.100.7", "203.0.113.9")
    foreign6: tuple[str, ...] = ("2001:db8::1",)
    names: tuple[str, ...] = ("victim.invalid", "pbx.example.invalid")

    def sip_host(self, rng: random.Random) -> str:
        choices = [
            self.third_party, *self.foreign, f"[{self.foreign6[0]}]", *self.names,
            "0.0.0.0", "255.255.255.255", "224.0.0.1", "::ffff:192.0.2.1", "1.2.3.999",
            "0177.0.0.1", "2130706433", "h\u00f6st.invalid", "a" * 300, "",
        ]  # fmt: skip
        return rng.choice(choices)

    def sip_port(self, rng: random.Random) -> str:
        return rng.choice(
            [str(self.third_party_sip), "5060", "0", "65535", "65536", "99999", "-1",
             "18446744073709551617", "5060x", ""]
        )  # fmt: skip

    def sdp_address(self, rng: random.Random) -> str:
        return rng.choice(
            [
                f"IN IP4 {self.third_party}", *(f"IN IP4 {a}" for a in self.foreign),
                f"IN IP6 {self.foreign6[0]}", f"IN IP4 {self.names[0]}", "IN IP4 0.0.0.0",
                "IN IP6 ::", "IN IP4 224.0.0.1/127", "IN IP4 255.255.255.255",
                "IN IP6 ::ffff:192.0.2.1", "IN IP4 ::1", "IN IP6 127.0.0.1", "IN IP4",
                "IN IP4 0177.0.0.1", "IN IP4 2130706433", "IN IP9 127.0.0.1", "",
                "IN IP4 127.0.0.1 extra", "IN IP4 1.2.3.999",
            ]
        )  # fmt: skip


@dataclass
class Dialog:
    """A call of the fuzzer's that in-dialog requests may aim at."""

    call_id: str
    from_tag: str
    to_tag: str
    invite_branch: str
    cseq: int = 1


@dataclass
class Context:
    """What the templates fill in: the transport and the fuzzer's own address."""

    transport: str  # "UDP" or "TCP"
    host: str
    port: int
    gateway_port: int
    rtp_port: int  # where the SDP of a normal offer points (a sink of the test's)
    addresses: Addresses
    dialog: Dialog | None = None
    serial: int = 0

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"


@dataclass
class Message:
    """A SIP request or response as lines, so mutations can work on headers."""

    start: str
    headers: list[tuple[str, str]]
    body: str = ""
    content_length: str | None = None  # None: the body's true length
    line_end: str = CRLF
    raw_tail: bytes = b""
    notes: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        body = self.body.encode("utf-8", "surrogateescape")
        headers = list(self.headers)
        length = str(len(body)) if self.content_length is None else self.content_length
        if length != "<omit>":
            headers.append(("Content-Length", length))
        end = self.line_end
        head = end.join([self.start, *(f"{n}: {v}" for n, v in headers)]) + end + end
        return head.encode("utf-8", "surrogateescape") + body + self.raw_tail


# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------


def sdp_offer(host: str, port: int, *, session: str = "1") -> list[str]:
    return [
        "v=0",
        f"o=- {session} 1 IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]


def _request(
    ctx: Context,
    method: str,
    *,
    call_id: str,
    from_tag: str,
    to_tag: str | None = None,
    cseq: int = 1,
    branch: str | None = None,
    user: str = "echo",
    body: list[str] | None = None,
) -> Message:
    via = f"SIP/2.0/{ctx.transport} {ctx.host}:{ctx.port};branch={branch or 'z9hG4bK-' + call_id}"
    to = f"<sip:{user}@127.0.0.1:{ctx.gateway_port}>" + (f";tag={to_tag}" if to_tag else "")
    headers = [
        ("Via", via),
        ("Max-Forwards", "70"),
        ("From", f"<sip:fuzz@{ctx.host}>;tag={from_tag}"),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", f"<sip:fuzz@{ctx.host}:{ctx.port};transport={ctx.transport.lower()}>"),
        ("User-Agent", "fuzzer"),
    ]
    text = ""
    if body is not None:
        headers.append(("Content-Type", "application/sdp"))
        text = CRLF.join(body) + CRLF
    uri = f"sip:{user}@127.0.0.1:{ctx.gateway_port}"
    return Message(f"{method} {uri} SIP/2.0", headers, text)


def invite(ctx: Context, call_id: str | None = None) -> Message:
    call_id = call_id or ctx.next_id("fz-inv-")
    return _request(
        ctx, "INVITE", call_id=call_id, from_tag="f" + call_id,
        body=sdp_offer(ctx.host, ctx.rtp_port),
    )  # fmt: skip


def _new(method: str, body: bool = False) -> Callable[[Context], Message]:
    def build(ctx: Context) -> Message:
        call_id = ctx.next_id(f"fz-{method.lower()}-")
        sdp = sdp_offer(ctx.host, ctx.rtp_port) if body else None
        return _request(ctx, method, call_id=call_id, from_tag="f" + call_id, body=sdp)

    return build


def in_dialog(method: str, body: bool = False) -> Callable[[Context], Message]:
    """A request in the fuzzer's live call (or in a call that does not exist, without one)."""

    def build(ctx: Context) -> Message:
        d = ctx.dialog
        if d is None:
            call_id = ctx.next_id("fz-nodlg-")
            d = Dialog(call_id, "f" + call_id, "nosuchtag", "z9hG4bK-" + call_id)
        d.cseq += 1
        branch = d.invite_branch if method in ("CANCEL", "ACK") else None
        cseq = 1 if method in ("CANCEL",) else d.cseq
        msg = _request(
            ctx, method, call_id=d.call_id, from_tag=d.from_tag, to_tag=d.to_tag,
            cseq=cseq, branch=branch or f"z9hG4bK-{d.call_id}-{d.cseq}",
            body=sdp_offer(ctx.host, ctx.rtp_port, session="2") if body else None,
        )  # fmt: skip
        if method == "INFO":
            msg.headers.append(("Content-Type", "application/dtmf-relay"))
            msg.body = "Signal=5\r\nDuration=160\r\n"
        return msg

    return build


def _response(ctx: Context) -> Message:
    call_id = ctx.next_id("fz-resp-")
    msg = _request(ctx, "BYE", call_id=call_id, from_tag="f" + call_id, to_tag="t")
    msg.start = "SIP/2.0 200 OK"
    return msg


TEMPLATES: list[tuple[str, Callable[[Context], Message], int]] = [
    ("INVITE", invite, 6),
    ("OPTIONS", _new("OPTIONS"), 2),
    ("REGISTER", _new("REGISTER"), 1),
    ("INVITE-late", _new("INVITE"), 1),
    ("MESSAGE", _new("MESSAGE"), 1),
    ("re-INVITE", in_dialog("INVITE", body=True), 3),
    ("re-INVITE-late", in_dialog("INVITE"), 1),
    ("ACK", in_dialog("ACK"), 2),
    ("BYE", in_dialog("BYE"), 1),
    ("CANCEL", in_dialog("CANCEL"), 2),
    ("INFO", in_dialog("INFO"), 1),
    ("UPDATE", in_dialog("UPDATE", body=True), 1),
    ("NOTIFY", in_dialog("NOTIFY"), 1),
    ("response", _response, 1),
]


# --------------------------------------------------------------------------------------------
# SIP mutations
# --------------------------------------------------------------------------------------------

HUGE = ["4294967296", "18446744073709551616", "-1", "0", "99999999999999999999999", "1e9"]


def _find(msg: Message, name: str) -> int | None:
    for i, (n, _) in enumerate(msg.headers):
        if n.lower() == name.lower():
            return i
    return None


def _set(msg: Message, name: str, value: str) -> None:
    i = _find(msg, name)
    if i is None:
        msg.headers.append((name, value))
    else:
        msg.headers[i] = (msg.headers[i][0], value)


def via_params(rng: random.Random, msg: Message, a: Addresses) -> None:
    i = _find(msg, "Via")
    if i is None:
        return
    value = msg.headers[i][1]
    extra = rng.choice(
        [
            f";rport={a.sip_port(rng)}", ";rport", f";received={a.sip_host(rng)}",
            f";maddr={a.sip_host(rng)}", ";branch=", ";branch=z9hG4bK\u00e9",
            ";branch=" + "z" * 5000, f";received={a.third_party};rport={a.third_party_sip}",
            ";ttl=300", ";;;", ";rport=5060;rport=5061", ";received",
        ]
    )  # fmt: skip
    msg.headers[i] = ("Via", value + extra)


def via_sent_by(rng: random.Random, msg: Message, a: Addresses) -> None:
    i = _find(msg, "Via")
    if i is None:
        return
    transport = rng.choice(["UDP", "TCP", "TLS", "SCTP", "WS", "XYZ", "", "UDP/extra"])
    branch = f"z9hG4bK-{rng.getrandbits(32):x}"
    msg.headers[i] = (
        "Via",
        f"SIP/2.0/{transport} {a.sip_host(rng)}:{a.sip_port(rng)};branch={branch}",
    )


def extra_via(rng: random.Random, msg: Message, a: Addresses) -> None:
    value = f"SIP/2.0/UDP {a.sip_host(rng)}:{a.sip_port(rng)};branch=z9hG4bK-x{rng.random()}"
    i = _find(msg, "Via") or 0
    msg.headers.insert(i + rng.choice([0, 1]), ("Via", value))


def contact(rng: random.Random, msg: Message, a: Addresses) -> None:
    value = rng.choice(
        [
            f"<sip:x@{a.sip_host(rng)}:{a.sip_port(rng)}>", "*", "<sip:>", "<tel:+1>",
            f"<sip:x@{a.third_party}:{a.third_party_sip};transport=tcp>",
            f"<sip:x@{a.third_party}:{a.third_party_sip}>, <sip:y@{a.foreign[0]}>",
            f"<sips:x@{a.foreign[1]}>;expires=99999999999", "sip:a@b@c", "<" + "a" * 3000 + ">",
        ]
    )  # fmt: skip
    _set(msg, "Contact", value)


def route_headers(rng: random.Random, msg: Message, a: Addresses) -> None:
    name = rng.choice(["Record-Route", "Route", "Reply-To", "Refer-To", "Path", "Alert-Info"])
    msg.headers.append(
        (name, f"<sip:{a.sip_host(rng)}:{a.third_party_sip};lr>, <sip:{a.foreign[2]};lr>")
    )


def request_uri(rng: random.Random, msg: Message, a: Addresses) -> None:
    if msg.start.startswith("SIP/"):
        return
    method = msg.start.split(" ", 1)[0]
    uri = rng.choice(
        [
            f"sip:echo@{a.sip_host(rng)}:{a.sip_port(rng)}", "sips:echo@127.0.0.1", "tel:+15551234",
            "sip:", "sip:@", "http://example.invalid/", "sip:" + "9" * 4000 + "@127.0.0.1",
            "sip:echo@127.0.0.1;maddr=192.0.2.1", "sip:%00@127.0.0.1", "sip:\u00e9@127.0.0.1",
        ]
    )  # fmt: skip
    version = rng.choice(["SIP/2.0", "SIP/2.0", "SIP/1.0", "sip/2.0", "SIP/2.0 extra", ""])
    msg.start = f"{method} {uri} {version}"


def method_name(rng: random.Random, msg: Message, a: Addresses) -> None:
    if msg.start.startswith("SIP/"):
        return
    rest = msg.start.split(" ", 1)[1] if " " in msg.start else ""
    method = rng.choice(["invite", "INVITE ", "PRACK", "SUBSCRIBE", "REFER", "PUBLISH", "X" * 200,
                         "INV\u00c9TE", "", "\x00"])  # fmt: skip
    msg.start = f"{method} {rest}"


def cseq(rng: random.Random, msg: Message, a: Addresses) -> None:
    i = _find(msg, "CSeq")
    method = msg.headers[i][1].split()[-1] if i is not None and msg.headers[i][1] else "INVITE"
    value = rng.choice(
        [f"{rng.choice(HUGE)} {method}", f"1 {rng.choice(['BYE', 'ACK', 'OPTIONS', 'FOO'])}",
         "1", "", "abc INVITE", f"1 {method} extra", f" 2   {method} ", f"2147483648 {method}"]
    )  # fmt: skip
    _set(msg, "CSeq", value)


def content_length(rng: random.Random, msg: Message, a: Addresses) -> None:
    true = len(msg.body.encode("utf-8", "surrogateescape"))
    msg.content_length = rng.choice(
        [str(true + 1), str(max(true - 1, 0)), str(true + 50), "0", "-1", "abc", "<omit>",
         str(70000), "99999999999999999999", f" {true} ", f"{true}, {true}", "1e3"]
    )  # fmt: skip


def numbers(rng: random.Random, msg: Message, a: Addresses) -> None:
    name = rng.choice(["Max-Forwards", "Expires", "Session-Expires", "Min-SE", "RSeq", "RAck"])
    _set(msg, name, rng.choice([*HUGE, "abc", "", "70;refresher=uac", "90;refresher=uas"]))


def call_ids(rng: random.Random, msg: Message, a: Addresses) -> None:
    i = _find(msg, "Call-ID")
    if i is None:
        return
    value = rng.choice(["", "x" * 5000, "a b c", "\u00e9t\u00e9", msg.headers[i][1] + "\x00",
                        "fz-shared-call-id"])  # fmt: skip
    msg.headers[i] = ("Call-ID", value)


def tags(rng: random.Random, msg: Message, a: Addresses) -> None:
    name = rng.choice(["From", "To"])
    i = _find(msg, name)
    if i is None:
        return
    value = msg.headers[i][1]
    value = rng.choice(
        [value.split(";tag=")[0], value + ";tag=" + "t" * 3000, value + ";tag=x;tag=y",
         '"\u00e9\u00e9" ' + value, "<sip:@>", "garbage", value.replace("<", "").replace(">", "")]
    )  # fmt: skip
    msg.headers[i] = (name, value)


def fold(rng: random.Random, msg: Message, a: Addresses) -> None:
    if not msg.headers:
        return
    i = rng.randrange(len(msg.headers))
    name, value = msg.headers[i]
    cut = rng.randrange(len(value) + 1)
    msg.headers[i] = (
        name,
        value[:cut] + rng.choice(["\r\n ", "\r\n\t", "\r\n  \r\n "]) + value[cut:],
    )


def duplicate(rng: random.Random, msg: Message, a: Addresses) -> None:
    if not msg.headers:
        return
    i = rng.randrange(len(msg.headers))
    name, value = msg.headers[i]
    msg.headers.insert(i + 1, (name, rng.choice([value, value + "2", ""])))
    if rng.random() < 0.3:
        msg.headers.append(("Content-Length", rng.choice(["0", "10", "5000"])))


def drop_header(rng: random.Random, msg: Message, a: Addresses) -> None:
    if msg.headers:
        del msg.headers[rng.randrange(len(msg.headers))]


def header_values(rng: random.Random, msg: Message, a: Addresses) -> None:
    if not msg.headers:
        return
    i = rng.randrange(len(msg.headers))
    name = msg.headers[i][0]
    value = rng.choice(["a" * 70000, "\u00e9\u00e8\u4e2d\U0001f600", "\udcff\udcfe", "%00",
                        "\x00" * 10, "", " ", ":::", "<sip:a@b>" * 200])  # fmt: skip
    msg.headers[i] = (rng.choice([name, name.lower(), name.upper(), name + " ", "x" + name]), value)


def compact_names(rng: random.Random, msg: Message, a: Addresses) -> None:
    short = {"via": "v", "from": "f", "to": "t", "call-id": "i", "contact": "m",
             "content-type": "c", "content-length": "l"}  # fmt: skip
    msg.headers = [
        (short.get(n.lower(), n) if rng.random() < 0.5 else n, v) for n, v in msg.headers
    ]
    if rng.random() < 0.5:
        msg.headers.append(("l", str(rng.choice([0, 5, 500]))))


def line_endings(rng: random.Random, msg: Message, a: Addresses) -> None:
    msg.line_end = rng.choice(["\n", "\r", "\r\r\n", "\n\r"])


def trailing(rng: random.Random, msg: Message, a: Addresses) -> None:
    msg.raw_tail = rng.choice(
        [b"\r\n\r\n", b"\x00" * 100, b"garbage after the body", b"INVITE sip:x SIP/2.0\r\n\r\n",
         bytes(rng.getrandbits(8) for _ in range(64))]
    )  # fmt: skip


def sdp(rng: random.Random, msg: Message, a: Addresses) -> None:
    lines = msg.body.split(CRLF) if msg.body else sdp_offer("127.0.0.1", 4000)
    lines = [line for line in lines if line]
    for _ in range(rng.randint(1, 3)):
        rng.choice(SDP_MUTATIONS)(rng, lines, a)
    msg.body = CRLF.join(lines) + rng.choice([CRLF, "", "\n"])
    if not any(n.lower() in ("content-type", "c") for n, _ in msg.headers):
        msg.headers.append(("Content-Type", "application/sdp"))


SIP_MUTATIONS: list[Callable[[random.Random, Message, Addresses], None]] = [
    via_params, via_params, via_sent_by, extra_via, contact, route_headers, request_uri,
    method_name, cseq, content_length, content_length, numbers, call_ids, tags, fold, duplicate,
    drop_header, header_values, compact_names, line_endings, trailing, sdp, sdp, sdp, sdp,
]  # fmt: skip


# --------------------------------------------------------------------------------------------
# SDP mutations (on the body's lines)
# --------------------------------------------------------------------------------------------


def _replace_line(lines: list[str], prefix: str, value: str) -> None:
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            lines[i] = value
            return
    lines.append(value)


def sdp_connection(rng: random.Random, lines: list[str], a: Addresses) -> None:
    value = "c=" + a.sdp_address(rng)
    where = rng.random()
    if where < 0.6:
        _replace_line(lines, "c=", value)
    elif where < 0.8:  # a media-level c= after the m= line, beside the session one
        lines.append(value)
    else:
        lines.insert(rng.randrange(len(lines) + 1), value)


def sdp_media(rng: random.Random, lines: list[str], a: Addresses) -> None:
    port = rng.choice(["0", "1", "65535", "65536", "-1", "4294967296", "4000/2", "x", "",
                       str(a.third_party_rtp)])  # fmt: skip
    proto = rng.choice(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "RTP/AVPF", "udp", "RTP/AVP "])
    fmts = rng.choice(["0", "8", "0 8 101", "", "255", "128", "96", "-1", "0 " * 2000, "x y z"])
    kind = rng.choice(["audio", "audio", "video", "image", "application", "AUDIO", ""])
    value = f"m={kind} {port} {proto} {fmts}"
    if rng.random() < 0.7:
        _replace_line(lines, "m=", value)
    else:
        lines.append(value)


def sdp_rtpmap(rng: random.Random, lines: list[str], a: Addresses) -> None:
    lines.append(
        rng.choice(
            ["a=rtpmap:0 PCMU/8000/1", "a=rtpmap:96 PCMU/99999999999", "a=rtpmap:0", "a=rtpmap:",
             "a=rtpmap:x PCMU/8000", "a=rtpmap:101 telephone-event/0", "a=rtpmap:8 pcma/16000",
             "a=rtpmap:96 PCMU/8000", "a=rtpmap:-1 PCMU/8000", "a=rtpmap:4294967296 PCMU/8000",
             "a=rtpmap:0 \u00e9/8000", "a=fmtp:101 " + "0-16," * 500, "a=fmtp:101",
             "a=ptime:" + rng.choice(["0", "-20", "1e9", "99999999999999", "abc", ""]),
             "a=maxptime:" + rng.choice(HUGE), "a=" + rng.choice(["sendonly", "recvonly",
             "inactive", "sendrecv"]), "a=rtcp:" + str(a.third_party_rtp) + " IN IP4 " +
             a.foreign[0], "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40,
             "a=candidate:1 1 UDP 1 192.0.2.1 9 typ host", "a=" + "x" * 5000]
        )
    )  # fmt: skip


def sdp_numbers(rng: random.Random, lines: list[str], a: Addresses) -> None:
    _replace_line(
        lines,
        rng.choice(["o=", "t=", "v="]),
        rng.choice(
            ["o=- 99999999999999999999999 99999999999999999999999 IN IP4 127.0.0.1",
             "o=- -1 -1 IN IP4 127.0.0.1", "o=", "t=99999999999999999999 -1", "t=", "v=1", "v=",
             "o=\u00e9 1 1 IN IP4 " + a.foreign[0]]
        ),
    )  # fmt: skip


def sdp_text(rng: random.Random, lines: list[str], a: Addresses) -> None:
    choice = rng.random()
    if choice < 0.25 and lines:
        del lines[rng.randrange(len(lines))]
    elif choice < 0.5 and lines:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif choice < 0.7:
        odd = ["s=\u00e9\u4e2d\U0001f600", "s=\x00\x01", "x", "=", "i=" + "i" * 9000, "\udcff=bad"]
        lines.append(rng.choice(odd))
    elif choice < 0.85 and lines:
        rng.shuffle(lines)
    else:
        lines.extend(sdp_offer("127.0.0.1", 4000)[5:] * rng.randint(1, 40))  # many m= sections


SDP_MUTATIONS: list[Callable[[random.Random, list[str], Addresses], None]] = [
    sdp_connection, sdp_connection, sdp_media, sdp_media, sdp_rtpmap, sdp_rtpmap,
    sdp_numbers, sdp_text,
]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Byte-level mutations, applied after encoding
# --------------------------------------------------------------------------------------------


def byte_mutation(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(7)
    n = len(data)
    if n == 0:
        return data
    if kind == 0:  # truncation
        return data[: rng.randrange(n)]
    if kind == 1:  # NUL bytes
        at = rng.randrange(n)
        return data[:at] + b"\x00" * rng.randint(1, 8) + data[at:]
    if kind == 2:  # bit flips
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == 3:  # a slice repeated
        at = rng.randrange(n)
        size = rng.randint(1, 200)
        return data[:at] + data[at : at + size] * rng.randint(2, 20) + data[at:]
    if kind == 4:  # random bytes inserted
        at = rng.randrange(n)
        return data[:at] + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))) + data[at:]
    if kind == 5:  # high bytes (invalid UTF-8)
        at = rng.randrange(n)
        return data[:at] + bytes([0xFF, 0xFE, 0xC3]) + data[at:]
    return data[rng.randrange(n) :]  # the start cut off


def sip_input(rng: random.Random, ctx: Context) -> tuple[str, bytes]:
    """One fuzzer input: its label (template and mutations) and its bytes."""
    names, builders, weights = zip(*TEMPLATES, strict=True)
    i = rng.choices(range(len(TEMPLATES)), weights=weights)[0]
    msg = builders[i](ctx)
    label = [names[i]]
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        mutation = rng.choice(SIP_MUTATIONS)
        mutation(rng, msg, ctx.addresses)
        label.append(mutation.__name__)
    data = msg.encode()
    if rng.random() < 0.2:
        data = byte_mutation(rng, data)
        label.append("bytes")
    return "+".join(label), data


# --------------------------------------------------------------------------------------------
# RTP
# --------------------------------------------------------------------------------------------

RTP_HEADER = struct.Struct("!BBHII")


@dataclass
class RtpState:
    """The caller's stream the mutations start from: PCMU, 20 ms, one SSRC."""

    ssrc: int = 0x1234ABCD
    sequence: int = 1000
    timestamp: int = 16000

    def next(self, payload_type: int = 0, payload: bytes = b"\xff" * 160) -> bytes:
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + 160) & 0xFFFFFFFF
        return (
            RTP_HEADER.pack(0x80, payload_type, self.sequence, self.timestamp, self.ssrc) + payload
        )


def rtp_input(rng: random.Random, state: RtpState) -> tuple[str, bytes]:
    """One mutated RTP datagram (or a valid one: the stream goes on between the mutants)."""
    kind = rng.randrange(16)
    payload = bytes(rng.getrandbits(8) for _ in range(160))
    if kind <= 2:
        return "valid", state.next(payload=payload)
    packet = bytearray(state.next(payload=payload))
    if kind == 3:  # version, padding, extension, CSRC count bits
        packet[0] = rng.getrandbits(8)
        return "first-byte", bytes(packet)
    if kind == 4:  # padding: a count of 0, larger than the packet, or the whole payload
        packet[0] |= 0x20
        packet[-1] = rng.choice([0, 1, 160, 172, 255])
        return "padding", bytes(packet)
    if kind == 5:  # header extension whose length overruns (or not) the packet
        packet[0] |= 0x10
        length = rng.choice([0, 1, 39, 40, 41, 0xFFFF])
        return "extension", bytes(packet[:12]) + struct.pack("!HH", 0xBEDE, length) + payload
    if kind == 6:  # CSRC count 15 on a short packet
        packet[0] = 0x80 | rng.choice([1, 15])
        return "csrc", bytes(packet[: rng.choice([12, 16, 40, 72])])
    if kind == 7:  # marker and payload type
        packet[1] = rng.getrandbits(8)
        return "payload-type", bytes(packet)
    if kind == 8:  # telephone-event, well-formed or not
        event = struct.pack("!BBH", rng.choice([5, 15, 16, 255]), rng.getrandbits(8),
                            rng.choice([0, 160, 0xFFFF]))  # fmt: skip
        header = bytearray(packet[:12])
        header[1] = 101 | (rng.getrandbits(1) << 7)
        return "dtmf", bytes(header) + event[: rng.choice([0, 2, 4])] + b"\x00" * rng.choice(
            [0, 100]
        )
    if kind == 9:  # sequence and timestamp jumps
        state.sequence = (state.sequence + rng.choice([-1, -100, 3000, 32768, 65535])) & 0xFFFF
        state.timestamp = (
            state.timestamp + rng.choice([-160, 2**31, 2**32 - 160, 8000 * 3600])
        ) & 0xFFFFFFFF
        return "jump", state.next(payload=payload)
    if kind == 10:  # another SSRC
        saved = state.ssrc
        state.ssrc = rng.getrandbits(32)
        data = state.next(payload=payload)
        if rng.random() < 0.5:
            state.ssrc = saved
        return "ssrc", data
    if kind == 11:  # sizes: empty, tiny, a header alone, odd, huge
        size = rng.choice([0, 1, 11, 12, 13, 161, 1400, 2047, 2048, 2049, 9000, 65000])
        return "size", (bytes(packet) * (size // len(packet) + 1))[:size]
    if kind == 12:  # not RTP: STUN, DTLS, RTCP, text
        return "not-rtp", rng.choice(
            [b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12, b"\x16\xfe\xfd" + b"\x00" * 50,
             b"\x80\xc8\x00\x06" + b"\x00" * 24, b"\x81\xc9\x00\x07" + b"\x00" * 28,
             b"INVITE sip:x SIP/2.0\r\n\r\n"]
        )  # fmt: skip
    if kind == 13:  # a payload of another codec's size
        return "payload-size", state.next(payload=payload * rng.choice([0, 2, 9]))
    if kind == 14:  # comfort noise, odd levels
        return "comfort-noise", state.next(payload_type=13, payload=bytes([rng.getrandbits(8)]))
    return "random", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
