"""SIP over TLS through real sockets: the gateway as users run it, a Python ssl client as the
PBX (and as the attacker), certificates made at test time.

What each test proves: plaintext and stalled handshakes are closed; mutual TLS refuses an
unknown CA, a missing certificate and a name not allowed; a SIGHUP rotates the certificate for
new connections while an open one stays; a broken pair is refused and the old one kept; a call
on TLS says so in Contact and Via, and the gateway's BYE comes over the caller's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import secrets
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.audio import active_bounds, normalized_xcorr, read_wav, speech_wav

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Baresip, free_udp_port, missing_peer_tools
from .tls_certs import Leaf, TestCa, fingerprint

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[2]
SENTENCE = "Hello, this is a test call to the echo line, please say it back to me"
RATE = 8000


def tls_config(server: Leaf, **tls: Any) -> dict[str, Any]:
    port = free_udp_port(also_tcp=True)
    return {
        "sip": {
            "transports": ["udp", "tls"],
            "tls": {"port": port, "cert_file": str(server.cert), "key_file": str(server.key),
                    **tls},
        }
    }  # fmt: skip


def tls_port(gateway: GatewayProcess) -> int:
    return int(gateway.config["sip"]["tls"]["port"])


def client_context(ca: TestCa, client: Leaf | None = None) -> ssl.SSLContext:
    """A PBX's context: it verifies the gateway's certificate (SAN IP:127.0.0.1)."""
    context = ssl.create_default_context(cafile=str(ca.pem))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


async def read_message(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"content-length", b"l"):
            length = int(value.strip())
    return head + (await reader.readexactly(length) if length else b"")


def options(port: int, local: tuple[str, int]) -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(6)
    return (
        f"OPTIONS sip:gw@{LOOPBACK}:{port};transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {local[0]}:{local[1]};branch={branch}\r\n"
        f"From: <sip:pbx@{LOOPBACK}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:gw@{LOOPBACK}>\r\n"
        f"Call-ID: {secrets.token_hex(8)}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class TlsPeer:
    """One TLS connection to the gateway, as a PBX holds it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        sock = writer.get_extra_info("sockname")
        self.local = (str(sock[0]), int(sock[1]))

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext, source: str = LOOPBACK) -> TlsPeer:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection(
                LOOPBACK, port, ssl=context, server_hostname=LOOPBACK, local_addr=(source, 0)
            )
        return cls(reader, writer)

    @property
    def certificate(self) -> bytes:
        return self.writer.get_extra_info("ssl_object").getpeercert(True)

    async def ping(self, port: int) -> bytes:
        """OPTIONS on this connection and its answer's status line."""
        self.writer.write(options(port, self.local))
        async with asyncio.timeout(TIMEOUT):
            await self.writer.drain()
            return (await read_message(self.reader)).split(b"\r\n", 1)[0]

    def close(self) -> None:
        self.writer.transport.abort()


async def refused(port: int, context: ssl.SSLContext, source: str = LOOPBACK) -> bool:
    """True when the gateway closes a connection before any SIP answer (in TLS 1.3 the
    client's handshake may finish before the server checks the client certificate)."""
    try:
        peer = await TlsPeer.connect(port, context, source)
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        answer = await peer.ping(port)
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return True
    finally:
        peer.close()
    raise AssertionError(f"the gateway answered a peer it should refuse: {answer!r}")


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TestCa, Leaf]:
    ca = TestCa(tmp_path / "pki")
    return ca, ca.issue("gateway", "gateway.test", ips=(LOOPBACK,))


async def test_plaintext_and_a_stalled_handshake_are_closed(
    tmp_path: Path, pki: tuple[TestCa, Leaf]
) -> None:
    ca, server = pki
    config = tls_config(server, handshake_timeout_s=1)
    async with GatewayProcess(tmp_path, config) as gateway:
        port = tls_port(gateway)
        # SIP in clear text on the TLS port: no answer, the connection closed.
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(options(port, ("127.0.0.1", 5999)))
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
        writer.close()
        await gateway.wait_for(
            "sip.tls_refused", timeout=TIMEOUT,
            where=lambda e: e["reason"] == "tls_handshake_failed",
        )  # fmt: skip

        # A client that connects and never starts its handshake: closed after the timeout.
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        started = time.monotonic()
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
        waited = time.monotonic() - started
        writer.close()
        assert 0.8 <= waited < 5, waited
        await gateway.wait_for(
            "sip.tls_refused", timeout=TIMEOUT,
            where=lambda e: e["reason"] == "tls_handshake_timeout",
        )  # fmt: skip

        # The listener is unharmed: a PBX that verifies the gateway's certificate gets answers.
        peer = await TlsPeer.connect(port, client_context(ca))
        assert await peer.ping(port) == b"SIP/2.0 200 OK"
        peer.close()


async def test_the_acl_and_connection_limits_apply_before_the_handshake(
    tmp_path: Path, pki: tuple[TestCa, Leaf]
) -> None:
    """A stranger costs no handshake, and connections still in their handshake count against
    the TCP limits (a flood of stalled handshakes cannot take every slot)."""
    ca, server = pki
    config = tls_config(server, handshake_timeout_s=2)
    config["sip"]["allow_from"] = ["127.0.0.1/32", "127.0.0.2/32"]
    config["sip"]["tcp"] = {"max_connections_per_source": 2}
    async with GatewayProcess(tmp_path, config) as gateway:
        port = tls_port(gateway)
        reader, writer = await asyncio.open_connection(LOOPBACK, port, local_addr=("127.0.0.3", 0))
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
        writer.close()
        await gateway.wait_for(
            "sip.dropped", timeout=TIMEOUT,
            where=lambda e: e["reason"] == "not_allowed" and e["transport"] == "TLS",
        )  # fmt: skip
        assert not gateway.find("sip.tls_refused")  # no handshake was attempted

        stalled = [
            await asyncio.open_connection(LOOPBACK, port, local_addr=("127.0.0.2", 0))
            for _ in range(3)
        ]
        await gateway.wait_for(
            "sip.dropped", timeout=TIMEOUT,
            where=lambda e: e["reason"] == "tcp_source_limit" and e["transport"] == "TLS",
        )  # fmt: skip
        # Another source is served while those two sit in their handshake.
        peer = await TlsPeer.connect(port, client_context(ca))
        assert await peer.ping(port) == b"SIP/2.0 200 OK"
        for reader, writer in stalled:  # all closed: one at accept, two at the deadline
            async with asyncio.timeout(TIMEOUT):
                assert await reader.read() == b""
            writer.close()
        timeout = await gateway.wait_for(
            "sip.tls_refused", timeout=TIMEOUT,
            where=lambda e: e["reason"] == "tls_handshake_timeout",
        )  # fmt: skip
        assert timeout["source"].startswith("127.0.0.2:")
        assert await peer.ping(port) == b"SIP/2.0 200 OK"
        peer.close()


async def test_mutual_tls_checks_the_chain_and_the_names(
    tmp_path: Path, pki: tuple[TestCa, Leaf]
) -> None:
    ca, server = pki
    pbx = ca.issue("pbx", "pbx.example.com", dns=("pbx.example.com",), client=True)
    by_cn = ca.issue("pbx2", "pbx2.example.com", client=True)  # the name in the CN only
    other_name = ca.issue("intruder", "intruder.example.com", client=True)
    rogue_ca = TestCa(tmp_path / "rogue", "Rogue CA")
    rogue = rogue_ca.issue("rogue", "pbx.example.com", dns=("pbx.example.com",), client=True)
    config = tls_config(
        server,
        verify_peer=True,
        ca_file=str(ca.pem),
        allowed_names=["PBX.example.com", "pbx2.example.com"],
    )
    async with GatewayProcess(tmp_path, config) as gateway:
        port = tls_port(gateway)
        for client in (pbx, by_cn):
            peer = await TlsPeer.connect(port, client_context(ca, client))
            assert await peer.ping(port) == b"SIP/2.0 200 OK"
            peer.close()

        assert await refused(port, client_context(ca))  # no client certificate
        await gateway.wait_for(
            "sip.tls_refused", timeout=TIMEOUT,
            where=lambda e: e["reason"] == "tls_untrusted_peer",
        )  # fmt: skip
        # The right name from an unknown CA (another host: refusals are logged once a minute
        # per source and reason).
        assert await refused(port, client_context(ca, rogue), "127.0.0.2")
        untrusted = await gateway.wait_for(
            "sip.tls_refused", timeout=TIMEOUT,
            where=lambda e: e["source"].startswith("127.0.0.2:"),
        )  # fmt: skip
        assert untrusted["reason"] == "tls_untrusted_peer"
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted["error"], untrusted
        assert await refused(port, client_context(ca, other_name))  # our CA, a name not allowed
        refusal = await gateway.wait_for(
            "sip.tls_refused", timeout=TIMEOUT,
            where=lambda e: e["reason"] == "tls_name_not_allowed",
        )  # fmt: skip
        assert "intruder.example.com" in refusal["error"]
        assert not gateway.find("sip.handler_failed")


async def test_sighup_rotates_the_certificate_and_keeps_the_old_on_a_broken_pair(
    tmp_path: Path, pki: tuple[TestCa, Leaf]
) -> None:
    ca, server = pki
    async with GatewayProcess(tmp_path, tls_config(server)) as gateway:
        port = tls_port(gateway)
        first = server.cert.read_bytes()
        before = await TlsPeer.connect(port, client_context(ca))
        assert fingerprint(before.certificate) == fingerprint(first)
        assert await before.ping(port) == b"SIP/2.0 200 OK"

        # Rotation: a new certificate and key in the same files, then SIGHUP.
        renewed = ca.issue("renewed", "gateway.test", ips=(LOOPBACK,))
        server.cert.write_bytes(renewed.cert.read_bytes())
        server.key.write_bytes(renewed.key.read_bytes())
        gateway.send_signal(signal.SIGHUP)
        await gateway.wait_for("sip.tls_reloaded", timeout=TIMEOUT)
        after = await TlsPeer.connect(port, client_context(ca))
        assert fingerprint(after.certificate) == fingerprint(renewed.cert.read_bytes())
        assert await before.ping(port) == b"SIP/2.0 200 OK"  # the open connection stays
        assert await after.ping(port) == b"SIP/2.0 200 OK"

        # A key that does not match the certificate, then a file that is not PEM: refused,
        # the renewed pair kept for new connections.
        other = ca.issue("other", "gateway.test", ips=(LOOPBACK,))
        server.key.write_bytes(other.key.read_bytes())
        gateway.send_signal(signal.SIGHUP)
        failed = await gateway.wait_for("sip.tls_reload_failed", timeout=TIMEOUT)
        assert "KEY_VALUES_MISMATCH" in failed["error"].upper(), failed
        server.key.write_bytes(renewed.key.read_bytes())
        server.cert.write_bytes(b"not a certificate\n")
        gateway.send_signal(signal.SIGHUP)
        await gateway.wait_count("sip.tls_reload_failed", 2, timeout=TIMEOUT)
        await gateway.wait_count("config.reloaded", 3, timeout=TIMEOUT)
        latest = await TlsPeer.connect(port, client_context(ca))
        assert fingerprint(latest.certificate) == fingerprint(renewed.cert.read_bytes())
        for peer in (before, after, latest):
            assert await peer.ping(port) == b"SIP/2.0 200 OK"
            peer.close()
        assert gateway.returncode is None
        for event in gateway.events:  # no key material in any log line
            assert "PRIVATE KEY" not in str(event)


def sdp_offer(rtp_port: int) -> str:
    return (
        f"v=0\r\no=pbx 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )


def header(message: bytes, name: str) -> str:
    for line in message.decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    raise AssertionError(f"no {name} in {message!r}")


async def call_over_tls(peer: TlsPeer, port: int, contact: str) -> tuple[str, bytes]:
    """INVITE (a sips: request URI) and ACK on `peer`'s connection: the Call-ID and the 200."""
    host, local_port = peer.local
    call_id = secrets.token_hex(8)
    tag = secrets.token_hex(4)
    body = sdp_offer(free_udp_port())
    invite = (
        f"INVITE sips:echo@{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {host}:{local_port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
        f"From: <sips:pbx@{LOOPBACK}>;tag={tag}\r\n"
        f"To: <sips:echo@{LOOPBACK}:{port}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\n"
        "Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    peer.writer.write(invite.encode())
    async with asyncio.timeout(TIMEOUT):
        while True:
            answer = await read_message(peer.reader)
            if not answer.startswith(b"SIP/2.0 1"):
                break
    assert answer.startswith(b"SIP/2.0 200"), answer
    ack = (
        f"ACK sip:echo@{LOOPBACK}:{port};transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {host}:{local_port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
        f"From: <sips:pbx@{LOOPBACK}>;tag={tag}\r\nTo: {header(answer, 'To')}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    peer.writer.write(ack.encode())
    async with asyncio.timeout(TIMEOUT):
        await peer.writer.drain()
    return call_id, answer


async def answer_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The gateway's BYE, answered 200 OK."""
    async with asyncio.timeout(TIMEOUT):
        bye = await read_message(reader)
    assert bye.startswith(b"BYE "), bye
    ok = [b"SIP/2.0 200 OK"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        ok.append(f"{name}: {header(bye, name)}".encode())
    writer.write(b"\r\n".join([*ok, b"Content-Length: 0", b"", b""]))
    return bye


async def test_a_call_over_tls_says_tls_and_gets_its_bye_on_the_connection(
    tmp_path: Path, pki: tuple[TestCa, Leaf]
) -> None:
    """A sips: request URI, answered with a Contact that says transport=tls; the gateway's
    BYE (max_call_s) has a TLS Via and arrives over the caller's own connection."""
    ca, server = pki
    config = tls_config(server)
    config["limits"] = {"max_call_s": 1}
    async with GatewayProcess(tmp_path, config) as gateway:
        port = tls_port(gateway)
        peer = await TlsPeer.connect(port, client_context(ca))
        host, local_port = peer.local
        contact = f"<sip:pbx@{host}:{local_port};transport=tls>"
        call_id, answer = await call_over_tls(peer, port, contact)
        gateway_contact = header(answer, "Contact")
        assert gateway_contact.endswith(f":{port};transport=tls>"), gateway_contact
        bye = await answer_bye(peer.reader, peer.writer)
        assert header(bye, "Call-ID") == call_id
        assert header(bye, "Via").startswith("SIP/2.0/TLS "), bye
        ended = await gateway.wait_for("call.ended", timeout=TIMEOUT)
        assert ended["reason"] == "max_call_duration"
        assert not gateway.find("sip.tls_connected")  # no new connection was needed
        peer.close()


@pytest.mark.parametrize("certificate_name", ["pbx.test", "other.test"])
async def test_a_bye_whose_connection_is_gone_goes_over_a_new_verified_one(
    tmp_path: Path, pki: tuple[TestCa, Leaf], certificate_name: str
) -> None:
    """The caller hangs up its connection after the ACK: the gateway's BYE goes over a new
    TLS connection to the caller's IP at its Contact's port, with SNI the Contact's name
    (never resolved: pbx.test exists nowhere) and the certificate checked against it. A
    certificate for another name: no BYE is sent, the refusal is logged."""
    ca, server = pki
    pbx = ca.issue("pbx-server", certificate_name, dns=(certificate_name,))
    listening = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    listening.load_cert_chain(pbx.cert, pbx.key)
    names: list[str | None] = []
    listening.sni_callback = lambda sock, name, context: names.append(name)  # type: ignore[assignment,misc,return-value]
    byes: asyncio.Queue[bytes] = asyncio.Queue()

    async def pbx_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            byes.put_nowait(await answer_bye(reader, writer))
            await writer.drain()
        writer.close()

    pbx_server = await asyncio.start_server(pbx_side, LOOPBACK, 0, ssl=listening)
    pbx_port = pbx_server.sockets[0].getsockname()[1]
    config = tls_config(server, ca_file=str(ca.pem))
    config["limits"] = {"max_call_s": 1}
    async with pbx_server, GatewayProcess(tmp_path, config) as gateway:
        port = tls_port(gateway)
        peer = await TlsPeer.connect(port, client_context(ca))
        contact = f"<sip:pbx@pbx.test:{pbx_port};transport=tls>"
        call_id, _ = await call_over_tls(peer, port, contact)
        peer.writer.close()
        async with asyncio.timeout(TIMEOUT):
            await peer.writer.wait_closed()
        ended = await gateway.wait_for("call.ended", timeout=TIMEOUT)
        assert ended["reason"] == "max_call_duration"
        if certificate_name == "pbx.test":
            async with asyncio.timeout(TIMEOUT):
                bye = await byes.get()
            assert header(bye, "Call-ID") == call_id
            assert header(bye, "Via").startswith("SIP/2.0/TLS ")
            assert names == ["pbx.test"]
            await gateway.wait_for("sip.tls_connected", timeout=TIMEOUT)
        else:
            refusal = await gateway.wait_for(
                "sip.tls_refused", timeout=TIMEOUT,
                where=lambda e: e["reason"] == "tls_connect_failed",
            )  # fmt: skip
            assert "pbx.test" in refusal["error"] or "mismatch" in refusal["error"], refusal
            assert byes.empty()


def reply_to(request: bytes, status: str, *extra: str) -> bytes:
    lines = [f"SIP/2.0 {status}"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        value = header(request, name)
        if name == "To" and ";tag=" not in value:
            value += ";tag=reg1"
        lines.append(f"{name}: {value}")
    return "\r\n".join([*lines, *extra, "Content-Length: 0", "", ""]).encode()


async def test_registration_over_tls_and_the_call_on_its_connection(
    tmp_path: Path, pki: tuple[TestCa, Leaf]
) -> None:
    """sip.register.transport tls: the gateway opens a verified connection to the registrar
    (its certificate checked against the configured host name, with SNI), REGISTERs over it
    with a TLS Via and a transport=tls Contact, and takes the PBX's INVITE on that connection."""
    ca, server = pki
    registrar_cert = ca.issue("registrar", "localhost", dns=("localhost",))
    listening = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    listening.load_cert_chain(registrar_cert.cert, registrar_cert.key)
    names: list[str | None] = []
    listening.sni_callback = lambda sock, name, context: names.append(name)  # type: ignore[assignment,misc,return-value]
    registers: asyncio.Queue[bytes] = asyncio.Queue()
    connection: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )

    async def registrar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not connection.done():
            connection.set_result((reader, writer))
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            request = await read_message(reader)  # the first REGISTER; the call test reads on
            registers.put_nowait(request)
            writer.write(reply_to(request, "200 OK", f"Contact: {header(request, 'Contact')}",
                                  "Expires: 300"))  # fmt: skip

    pbx = await asyncio.start_server(registrar, LOOPBACK, 0, ssl=listening)
    pbx_port = pbx.sockets[0].getsockname()[1]
    config = tls_config(server, ca_file=str(ca.pem), handshake_timeout_s=1)
    config["sip"]["tcp"] = {"idle_timeout_s": 0.3}
    config["sip"]["register"] = {
        "registrar": f"localhost:{pbx_port}",
        "user": "gw",
        "password_env": "GW_REGISTER_PASSWORD",
        "transport": "tls",
    }
    env = {"GW_REGISTER_PASSWORD": "not-used-without-a-challenge"}
    async with pbx, GatewayProcess(tmp_path, config, env=env) as gateway:
        port = tls_port(gateway)
        async with asyncio.timeout(TIMEOUT):
            register = await registers.get()
            reader, writer = await connection
        assert register.startswith(b"REGISTER "), register
        assert header(register, "Via").startswith("SIP/2.0/TLS "), register
        assert header(register, "Contact").endswith(f":{port};transport=tls>"), register
        assert names == ["localhost"]
        await gateway.wait_for("sip.registered", timeout=TIMEOUT)

        # Let more than the idle timeout pass (a stalled handshake's 1 s deadline marks it):
        # the registration's connection is kept, whatever sip.tcp.idle_timeout_s says.
        stalled_reader, stalled = await asyncio.open_connection(LOOPBACK, port)
        async with asyncio.timeout(TIMEOUT):
            assert await stalled_reader.read() == b""
        stalled.close()
        await gateway.wait_for("sip.tls_refused", timeout=TIMEOUT)

        # The PBX sends the call over the connection the gateway keeps open.
        local = writer.get_extra_info("sockname")
        peer = TlsPeer(reader, writer)
        assert peer.local == (str(local[0]), int(local[1]))
        contact = f"<sip:pbx@{LOOPBACK}:{pbx_port};transport=tls>"
        call_id, answer = await call_over_tls(peer, port, contact)
        assert header(answer, "Contact").endswith(f":{port};transport=tls>")
        received = await gateway.wait_for("call.received", timeout=TIMEOUT)
        assert received["source"] == f"{LOOPBACK}:{pbx_port}"
        assert header(answer, "Call-ID") == call_id


@pytest.mark.skipif(
    bool(missing_peer_tools("baresip", "espeak-ng", "sox")),
    reason="needs baresip, espeak-ng and sox (scripts/install-test-peers.sh)",
)
async def test_baresip_over_tls_with_srtp_hears_its_words_back(
    tmp_path: Path, pki: tuple[TestCa, Leaf]
) -> None:
    """A real phone over TLS with mandatory SRTP (SDES keys, accepted by default only because
    the signalling is TLS), the gateway's embedded echo agent: its words come back. (Mutual
    TLS works with baresip too, `sip_certificate` with an allowed name; the pjsua2 test covers
    it, to keep the suite short.)"""
    ca, server = pki
    config = tls_config(server)
    extra = [f"sip_cafile\t\t{ca.pem}", "module\t\t\tsrtp.so"]
    speech = speech_wav(tmp_path / "speech.wav", SENTENCE, RATE, 0.5, 9.0)
    start, end = active_bounds(speech, RATE)
    reference = speech[start:end]
    async with GatewayProcess(tmp_path, config) as gateway:
        port = tls_port(gateway)
        caller = Baresip(
            tmp_path / "baresip",
            tmp_path / "speech.wav",
            f"sip:echo@{LOOPBACK}:{port};transport=tls",
            codecs="PCMU;mediaenc=srtp-mand",  # the account line's next parameter
            extra_config=extra,
        )
        result = (await caller.run(timeout=60)).check()
        ended = await gateway.wait_for("call.ended", timeout=15)
    assert ended["reason"] == "caller_bye"
    [answered] = gateway.find("call.answered")
    [stats] = gateway.find("rtp.stats")
    assert answered["srtp"] == "AES_CM_128_HMAC_SHA1_80"  # Debian 12's baresip offers only it
    assert stats["srtp_auth_failures"] == 0 and stats["packets_in"] > 300
    [received] = gateway.find("call.received")
    # It reached the TLS port, where nothing but TLS is heard (UDP listens on sip.port).
    assert received["callee"] == f"sip:echo@{LOOPBACK}:{port};transport=tls"
    assert result.received_wav is not None
    rate, heard = read_wav(result.received_wav)
    assert rate == RATE
    peak, lag = normalized_xcorr(reference, heard)
    print(f"\necho over TLS + SRTP: correlation {peak:.3f}, echo starts {lag / RATE:.2f} s in")
    assert peak >= 0.8
    assert lag / RATE > end / RATE, "the echo started before the caller finished speaking"
    assert not gateway.find("sip.tls_refused")


@pytest.mark.skipif(
    importlib.util.find_spec("pjsua2") is None or bool(missing_peer_tools("espeak-ng", "sox")),
    reason="needs pjsua2-python (the test extra), espeak-ng and sox",
)
async def test_pjsua2_over_mutual_tls_hears_its_words_back(
    tmp_path: Path, pki: tuple[TestCa, Leaf]
) -> None:
    """PJSIP verifies the gateway's certificate and presents its own (mutual TLS, an allowed
    name) calling the echo agent: its words come back."""
    ca, server = pki
    config = tls_config(server)
    phone = ca.issue("pjsua", "pjsua.example.com", dns=("pjsua.example.com",), client=True)
    client_files = [str(phone.cert), str(phone.key)]
    config["sip"]["tls"].update(
        verify_peer=True, ca_file=str(ca.pem), allowed_names=["pjsua.example.com"]
    )
    speech = speech_wav(tmp_path / "speech.wav", SENTENCE, RATE, 0.5, 6.0)
    start, end = active_bounds(speech, RATE)
    reference = speech[start:end]
    heard_path = tmp_path / "heard.wav"
    async with GatewayProcess(tmp_path, config) as gateway:
        port = tls_port(gateway)
        uri = f"sip:echo@{LOOPBACK}:{port};transport=tls"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.pjsua2_caller", uri,
            str(tmp_path / "speech.wav"), str(heard_path), "13", str(ca.pem), *client_files,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=REPO,
        )  # fmt: skip
        try:
            async with asyncio.timeout(45):
                output, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = output.decode(errors="replace")
        assert proc.returncode == 0, text[-3000:]
        await gateway.wait_for("call.ended", timeout=TIMEOUT)
    [received] = gateway.find("call.received")
    assert received["callee"].startswith(f"sip:echo@{LOOPBACK}")  # PJSIP's To drops the rest
    rate, heard = read_wav(heard_path)
    assert rate == RATE
    peak, lag = normalized_xcorr(reference, heard)
    print(f"\npjsua2 echo over TLS: correlation {peak:.3f}, echo starts {lag / RATE:.2f} s in")
    assert peak >= 0.8
    assert not gateway.find("sip.tls_refused")
