"""Hostile and broken SIP over real UDP and TCP sockets: torture messages in the manner of
RFC 4475, truncated, oversized and binary input. The gateway answers what it can, drops the
rest, never falls over, and keeps no state for any of it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from .gateway_proc import GatewayProcess, InProcessGateway
from .peers import LOOPBACK
from .scenarios import (
    FAST_TIMERS,
    SIP_TESTS,
    in_dialog,
    invite,
    ok_to_request,
    options_expecting,
    pause,
    recv,
    recv_request,
    run_sipp,
    scenario,
    sdp,
)

pytestmark = SIP_TESTS

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\n"
)


def request(
    call: str,
    port: int,
    *,
    method: str = "INVITE",
    uri: str = "sip:echo@127.0.0.1",
    version: str = "SIP/2.0",
    cseq: str | None = None,
    drop: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    body: str = "",
    length: str | None = None,
) -> bytes:
    headers = {
        "Via": f"SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK-{call}",
        "From": f"<sip:torture@{LOOPBACK}>;tag={call}",
        "To": "<sip:echo@127.0.0.1>",
        "Call-ID": call,
        "CSeq": cseq or f"1 {method}",
        "Max-Forwards": "70",
        "Contact": f"<sip:torture@{LOOPBACK}:{port}>",
    }
    lines = [f"{method} {uri} {version}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k not in drop]
    lines += list(extra)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {length if length is not None else len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def corpus(port: int) -> dict[str, tuple[bytes, int | None]]:
    """Call-ID -> (message, the status it must get, or None: no answer at all)."""
    r = request
    return {
        # Valid but unusual: folded lines, compact forms, odd spacing (RFC 4475 §3.1.1.1).
        "wsinv": (
            r("wsinv", port, body=SDP, extra=("Subject:\r\n  folded over\r\n\tthree lines",))
            .replace(b"To: ", b"t:   ")
            .replace(b"Max-Forwards: 70", b"Max-Forwards  :   70"),
            488,
        ),
        "intmeth": (r("intmeth", port, method="!interesting-Method0123456789_*+`.%~"), 405),
        "longreq": (r("longreq", port, extra=("X-Long: " + "a" * 4000,), body=SDP), 488),
        "insuf": (r("insuf", port, drop=("From", "To")), 400),
        "nocallid": (r("nocallid", port, drop=("Call-ID",)), 400),
        "clerr": (r("clerr", port, body=SDP, length="9999"), 400),
        "ncl": (r("ncl", port, body=SDP, length="-999"), 400),
        "scalar02": (r("scalar02", port, cseq="36893488147419103232 INVITE"), 400),
        "mismatch01": (r("mismatch01", port, cseq="1 OPTIONS"), 400),
        "novelsc": (r("novelsc", port, uri="soap.beep://192.0.2.103:3002"), 416),
        "bext01": (r("bext01", port, method="OPTIONS", extra=("Require: nothingSupported",)), 420),
        "badsdp": (r("badsdp", port, body="v=0\r\nm=audio notaport RTP/AVP x\r\n"), 400),
        "unkct": (r("unkct", port, body="<xml/>").replace(b"application/sdp", b"text/xml"), 415),
        "nocolon": (r("nocolon", port, extra=("This line has no colon",)), 400),
        "badcontact": (
            r("badcontact", port, body=SDP).replace(
                f"<sip:torture@{LOOPBACK}:{port}>".encode(), f"<sip:t@{LOOPBACK}:99999>".encode()
            ),
            400,
        ),
        "rport": (
            r("rport", port).replace(
                b";branch=z9hG4bK-rport", b";rport=70000;branch=z9hG4bK-rport"
            ),
            400,
        ),
        "badvers": (r("badvers", port, version="SIP/7.0"), None),
        "novia": (r("novia", port, drop=("Via",)), None),
        "truncated": (r("truncated", port, body=SDP)[:150], 400),  # Via intact: 400
        "cut": (r("cut", port, body=SDP)[:60], None),  # Via cut short: no way to answer
    }


class Collector(asyncio.DatagramProtocol):
    """The first final status per message, found by the branch of its Via (z9hG4bK-NAME)."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}
        self.got = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode(errors="replace")
        status = int(text.split(" ", 2)[1]) if text.startswith("SIP/2.0 ") else 0
        branch = re.search(r"branch=z9hG4bK-([\w-]+)", text)
        if status >= 200 and branch:
            self.first.setdefault(branch[1], status)
            self.got.set()

    async def wait_for(self, call: str, timeout: float = 10) -> int:
        async with asyncio.timeout(timeout):
            while call not in self.first:
                self.got.clear()
                await self.got.wait()
        return self.first[call]


async def test_torture_messages_get_precise_answers_and_leave_nothing(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    config = {"media": {"codecs": ["PCMA"]}}  # a parsed INVITE (PCMU only) says so with a 488
    async with InProcessGateway(config, timers=FAST_TIMERS) as gateway:
        sock, peer = await loop.create_datagram_endpoint(
            Collector, local_addr=(LOOPBACK, 0), remote_addr=(LOOPBACK, gateway.port)
        )
        try:
            port = sock.get_extra_info("sockname")[1]
            messages = corpus(port)
            junk = [
                b"",
                b"\r\n\r\n",
                bytes(range(256)) * 4,
                b"\x00" * 1400,
                b"SIP/2.0 999 X\r\n\r\n",
            ]
            for data in junk:
                sock.sendto(data)
            for data, _ in messages.values():
                sock.sendto(data)
            huge = request("huge", port, method="OPTIONS", extra=("X-Junk: " + "j" * 64000,))
            sock.sendto(huge)
            sock.sendto(request("sentinel", port, method="OPTIONS"))
            assert await peer.wait_for("sentinel") == 200  # everything before it was handled
            assert await peer.wait_for("huge") == 200
            for call, (_, status) in messages.items():
                if status is not None:  # a 488 comes from the call's task, after the sentinel
                    await peer.wait_for(call)
            got = {call: peer.first.get(call) for call in messages}
            assert got == {call: status for call, (_, status) in messages.items()}
            # INVITEs refused after validation were never ACKed: timer H ends them.
            stateful = ("wsinv", "longreq", "badsdp", "unkct")
            await gateway.wait_count("sip.ack_timeout", len(stateful), timeout=15)
            assert len(gateway.uas.invites) == 0 and not gateway.uas._calls
            assert not gateway.gateway.calls and not gateway.realtime_sessions
            assert not gateway.find("sip.handler_failed")
        finally:
            sock.close()
        await run_sipp(tmp_path, options_expecting(tmp_path / "after.xml", 200), gateway.port)


async def test_tcp_oversized_and_junk_connections_are_dropped_not_fatal(tmp_path: Path) -> None:
    async with InProcessGateway({"sip": {"transports": ["udp", "tcp"]}}) as gateway:
        for payload in (
            b"OPTIONS sip:x SIP/2.0\r\nX-Junk: " + b"j" * (70 * 1024) + b"\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 1000,
            bytes(range(256)) * 64 + b"\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection(LOOPBACK, gateway.port)
            writer.write(payload)
            await writer.drain()
            async with asyncio.timeout(10):
                await reader.read()  # the gateway closes the connection
            writer.close()
        await run_sipp(
            tmp_path, options_expecting(tmp_path / "tcp_ok.xml", 200), gateway.port, transport="t1"
        )
        assert not gateway.find("sip.handler_failed")


async def test_calls_over_tcp_are_answered_on_their_connection(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path, {"sip": {"transports": ["udp", "tcp"]}}) as gateway:
        # Via names a listening port (5099) other than the connection's, as PBXs do.
        over_tcp = scenario(
            tmp_path / "tcp_call.xml",
            invite(sdp(), via_port=5099),
            recv(100, optional=True),
            recv(200),
            in_dialog("ACK", 1, via_port=5099),
            pause(300),
            in_dialog("BYE", 2, via_port=5099),
            recv(200),
        )
        await run_sipp(tmp_path, over_tcp, gateway.port, transport="t1", context=gateway.tail)
        udp = scenario(
            tmp_path / "udp_call.xml",
            invite(sdp()),
            recv(100, optional=True),
            recv(200),
            in_dialog("ACK", 1),
            pause(200),
            in_dialog("BYE", 2),
            recv(200),
        )
        await run_sipp(tmp_path, udp, gateway.port, context=gateway.tail)
        await gateway.wait_count("call.ended", 2, timeout=10)
        assert [e["reason"] for e in gateway.find("call.ended")] == ["caller_bye"] * 2


async def test_tcp_200_is_not_resent_and_our_bye_goes_on_the_connection(tmp_path: Path) -> None:
    config = {"sip": {"transports": ["udp", "tcp"]}}
    async with InProcessGateway(config, timers=FAST_TIMERS) as gateway:
        no_ack = scenario(
            tmp_path / "tcp_no_ack.xml",
            invite(sdp(), via_port=5099),
            recv(100, optional=True),
            recv(200),  # once: TCP is reliable, a second 200 would fail the scenario
            recv_request("BYE", timeout_ms=10000, headers={"Via": "SIP/2.0/TCP "}),
            ok_to_request(),
        )
        await run_sipp(tmp_path, no_ack, gateway.port, transport="t1", context=gateway.tail)
        ended = await gateway.wait_for("call.ended", timeout=10)
        assert ended["reason"] == "ack_timeout"
