"""deploy/kamailio with WITH_TLS for real: callers reach Kamailio over mutual TLS, Kamailio
reaches two gateways over mutual TLS (`sip.tls.verify_peer` with Kamailio's client certificate
in `allowed_names`), calls spread over both, a real phone's SRTP echo comes back, and the
gateway's BYE finds the caller through Kamailio's Record-Route and the caller's connection. A
Kamailio whose client certificate a gateway does not allow gets no call through, and the
gateway says why."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.audio import active_bounds, normalized_xcorr, read_wav, speech_wav

from .gateway_proc import GatewayProcess
from .kamailio_proc import BINARY, Kamailio, KamailioTls, tls_module_installed
from .peers import LOOPBACK, Baresip, free_udp_port, missing_peer_tools
from .test_sip_tls import TlsPeer, client_context, header, read_message, refused, sdp_offer
from .tls_certs import Leaf, TestCa

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        BINARY is None or not tls_module_installed(),
        reason="kamailio or its tls module (kamailio-tls-modules) not installed",
    ),
]

TIMEOUT = 10.0
RATE = 8000
SENTENCE = "Hello, this is the echo line behind Kamailio"
KAMAILIO_NAME = "kamailio.example.com"  # Kamailio's client certificate, allowed by the gateways


class Pki:
    """One test CA for everyone: gateways' server certificates, Kamailio's server certificate
    (callers check it) and client certificate (gateways check it), a PBX's client certificate."""

    def __init__(self, directory: Path) -> None:
        self.ca = TestCa(directory)
        # also_client: a gateway reopening a dialog's connection to Kamailio shows it too.
        self.gateway = self.ca.issue("gateway", "gateway.test", ips=(LOOPBACK,), also_client=True)
        self.kamailio = self.ca.issue("kamailio", "kamailio.test", ips=(LOOPBACK,))
        self.kamailio_client = self.ca.issue(
            "kamailio-client", KAMAILIO_NAME, dns=(KAMAILIO_NAME,), client=True
        )
        self.pbx = self.ca.issue("pbx", "pbx.example.com", dns=("pbx.example.com",), client=True)

    def kamailio_tls(self, client: Leaf | None = None) -> KamailioTls:
        client = client or self.kamailio_client
        return KamailioTls(
            server_cert=self.kamailio.cert,
            server_key=self.kamailio.key,
            callers_ca=self.ca.pem,
            client_cert=client.cert,
            client_key=client.key,
            gateways_ca=self.ca.pem,
        )

    def gateway_config(self, **extra: Any) -> dict[str, Any]:
        """TLS only toward Kamailio, with mutual TLS: Kamailio's client certificate or nothing."""
        config: dict[str, Any] = {
            "sip": {
                "transports": ["udp", "tls"],
                "tls": {
                    "port": free_udp_port(also_tcp=True),
                    "cert_file": str(self.gateway.cert),
                    "key_file": str(self.gateway.key),
                    "ca_file": str(self.ca.pem),
                    "verify_peer": True,
                    "allowed_names": [KAMAILIO_NAME],
                },
            },
        }
        return {**config, **extra}


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def tls_port(gateway: GatewayProcess) -> int:
    return int(gateway.config["sip"]["tls"]["port"])


def route_set(answer: bytes) -> list[str]:
    """The Record-Route entries of a 2xx, in the order the caller's Route header takes them."""
    routes = []
    for line in answer.decode().split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "record-route":
            routes += [v.strip() for v in value.split(",")]
    return routes


async def final_answer(peer: TlsPeer) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        while True:
            answer = await read_message(peer.reader)
            if not answer.startswith(b"SIP/2.0 1"):
                return answer


async def call_and_hang_up(peer: TlsPeer, port: int) -> bytes:
    """INVITE, ACK and BYE through Kamailio on `peer`'s connection, in-dialog requests along
    the Record-Route set as a phone sends them. Returns the 200 to the INVITE."""
    host, local_port = peer.local
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    body = sdp_offer(free_udp_port())
    contact = f"<sip:pbx@{host}:{local_port};transport=tls>"

    def request(method: str, uri: str, cseq: int, to: str, extra: str = "", sdp: str = "") -> bytes:
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS {host}:{local_port};rport;branch=z9hG4bK{secrets.token_hex(6)}\r\n"
            f"From: <sip:pbx@{LOOPBACK}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\nContact: {contact}\r\nMax-Forwards: 70\r\n{extra}"
            + ("Content-Type: application/sdp\r\n" if sdp else "")
            + f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
        ).encode()

    uri = f"sip:echo@{LOOPBACK}:{port};transport=tls"
    peer.writer.write(request("INVITE", uri, 1, f"<{uri}>", sdp=body))
    answer = await final_answer(peer)
    assert answer.startswith(b"SIP/2.0 200"), answer
    to, target = header(answer, "To"), header(answer, "Contact").strip("<>")
    route = f"Route: {', '.join(route_set(answer))}\r\n"
    peer.writer.write(request("ACK", target, 1, to, route))
    peer.writer.write(request("BYE", target, 2, to, route))
    bye_answer = await final_answer(peer)
    assert bye_answer.startswith(b"SIP/2.0 200"), bye_answer
    return answer


def context(kamailio: Kamailio, *gateways: GatewayProcess) -> str:
    parts = [f"--- kamailio\n{kamailio.tail(40)}"]
    parts += [f"--- gateway {i}\n{g.tail(15)}" for i, g in enumerate(gateways, 1)]
    return "\n".join(parts)


async def test_calls_over_mutual_tls_spread_over_two_gateways(tmp_path: Path, pki: Pki) -> None:
    """A PBX on mutual TLS places calls through Kamailio: every one is answered, by both
    gateways between them, over TLS connections the gateways accepted only because Kamailio
    showed its allowed client certificate; Kamailio record-routes itself with transport=tls.
    A caller without a client certificate, or with one from another CA, gets nothing."""
    (tmp_path / "gw1").mkdir()
    (tmp_path / "gw2").mkdir()
    async with (
        GatewayProcess(tmp_path / "gw1", pki.gateway_config()) as gw1,
        GatewayProcess(tmp_path / "gw2", pki.gateway_config()) as gw2,
        Kamailio(
            tmp_path / "kamailio", [tls_port(gw1), tls_port(gw2)], tls=pki.kamailio_tls()
        ) as kamailio,
    ):  # fmt: skip
        assert kamailio.tls_port is not None
        port = kamailio.tls_port
        tls_contacts = {f"<sip:{LOOPBACK}:{tls_port(g)};transport=tls>" for g in (gw1, gw2)}
        peer = await TlsPeer.connect(port, client_context(pki.ca, pki.pbx))
        try:
            calls = 12
            for _ in range(calls):
                try:
                    answer = await call_and_hang_up(peer, port)
                except (AssertionError, TimeoutError) as exc:
                    raise AssertionError(f"{exc}\n{context(kamailio, gw1, gw2)}") from None
                [record_route] = route_set(answer)
                assert f"{LOOPBACK}:{port};transport=tls;lr" in record_route, record_route
                # Answered on a gateway's TLS listener (its Contact names that port).
                contact = header(answer, "Contact")
                assert contact in tls_contacts, (contact, tls_contacts)
        finally:
            peer.close()
        for gateway in (gw1, gw2):
            await gateway.wait_count("call.ended", len(gateway.find("call.answered")),
                                     timeout=TIMEOUT)  # fmt: skip
        answered = len(gw1.find("call.answered")), len(gw2.find("call.answered"))
        print(f"\n{calls} calls over TLS through Kamailio: {answered} per gateway")
        assert sum(answered) == calls and min(answered) > 0, answered
        for gateway in (gw1, gw2):
            assert all(e["reason"] == "caller_bye" for e in gateway.find("call.ended"))
            assert not gateway.find("sip.tls_refused"), gateway.find("sip.tls_refused")

        # Kamailio's listener requires a client certificate of the callers' CA: none, or the
        # PBX's name from another CA, and the connection is closed before any SIP.
        assert await refused(port, client_context(pki.ca))
        rogue = TestCa(tmp_path / "rogue", "Rogue CA")
        forged = rogue.issue("pbx", "pbx.example.com", dns=("pbx.example.com",), client=True)
        assert await refused(port, client_context(pki.ca, forged))
        assert sum(len(g.find("call.received")) for g in (gw1, gw2)) == calls


@pytest.mark.skipif(
    bool(missing_peer_tools("baresip", "espeak-ng", "sox")),
    reason="needs baresip, espeak-ng and sox (scripts/install-test-peers.sh)",
)
async def test_baresip_srtp_echo_through_kamailio_and_the_gateways_bye_back(
    tmp_path: Path, pki: Pki
) -> None:
    """baresip (mutual TLS, mandatory SRTP) -> Kamailio (TLS) -> a gateway (TLS, mutual):
    the SDES keys cross two TLS hops, the echo agent's answer comes back through SRTP, and
    the gateway's BYE (limits.max_call_s) reaches baresip through Kamailio, which sends it
    down the connection baresip opened."""
    speech = speech_wav(tmp_path / "speech.wav", SENTENCE, RATE, 0.5, 8.0)
    start, end = active_bounds(speech, RATE)
    reference = speech[start:end]
    max_call_s = 7
    (tmp_path / "gw").mkdir()
    config = pki.gateway_config(limits={"max_call_s": max_call_s})
    async with (
        GatewayProcess(tmp_path / "gw", config) as gateway,
        Kamailio(tmp_path / "kamailio", [tls_port(gateway)], tls=pki.kamailio_tls()) as kamailio,
    ):
        caller = Baresip(
            tmp_path / "baresip",
            tmp_path / "speech.wav",
            f"sip:echo@{LOOPBACK}:{kamailio.tls_port};transport=tls",
            codecs="PCMU;mediaenc=srtp-mand",
            extra_config=[
                f"sip_cafile\t\t{pki.ca.pem}",
                f"sip_certificate\t\t{pki.pbx.combined}",
                "module\t\t\tsrtp.so",
            ],
        )
        try:
            result = (await caller.run(timeout=40)).check()
            ended = await gateway.wait_for("call.ended", timeout=TIMEOUT)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{context(kamailio, gateway)}") from None
    assert ended["reason"] == "max_call_duration", ended
    # baresip hung up because the gateway's BYE reached it, before its WAV ran out.
    assert "Connection reset by peer" in (result.close_reason or ""), result.describe()
    [answered] = gateway.find("call.answered")
    assert answered["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    [stats] = gateway.find("rtp.stats")
    assert stats["srtp_auth_failures"] == 0 and stats["packets_in"] > 200, stats
    assert result.received_wav is not None
    rate, heard = read_wav(result.received_wav)
    assert rate == RATE
    peak, lag = normalized_xcorr(reference, heard)
    print(
        f"\nbaresip -> Kamailio -> gateway, TLS + SRTP: correlation {peak:.3f}, "
        f"echo starts {lag / RATE:.2f} s in"
    )
    assert peak >= 0.8
    assert lag > end, "the echo started before the caller finished speaking"
    assert not gateway.find("sip.tls_refused")


@pytest.mark.parametrize("kamailio_certificate", ["another_ca", "name_not_allowed"])
async def test_a_gateway_refuses_kamailio_with_a_certificate_it_does_not_allow(
    tmp_path: Path, pki: Pki, kamailio_certificate: str
) -> None:
    """Kamailio shows a client certificate from another CA (with the allowed name), or from
    the gateways' CA with a name not in allowed_names: the gateway closes every connection
    and logs the reason, and the PBX's call is refused by Kamailio (no gateway to take it)."""
    if kamailio_certificate == "another_ca":
        rogue = TestCa(tmp_path / "rogue", "Rogue CA")
        client = rogue.issue("kamailio", KAMAILIO_NAME, dns=(KAMAILIO_NAME,), client=True)
        reason = "tls_untrusted_peer"
    else:
        client = pki.ca.issue("other", "other.example.com", dns=("other.example.com",),
                              client=True)  # fmt: skip
        reason = "tls_name_not_allowed"
    (tmp_path / "gw").mkdir()
    async with (
        GatewayProcess(tmp_path / "gw", pki.gateway_config()) as gateway,
        Kamailio(
            tmp_path / "kamailio", [tls_port(gateway)], tls=pki.kamailio_tls(client)
        ) as kamailio,
    ):  # fmt: skip
        refusal = await gateway.wait_for("sip.tls_refused", timeout=TIMEOUT)
        assert refusal["reason"] == reason, refusal
        assert (
            kamailio_certificate != "name_not_allowed" or "other.example.com" in refusal["error"]
        ), refusal
        assert kamailio.tls_port is not None
        peer = await TlsPeer.connect(kamailio.tls_port, client_context(pki.ca, pki.pbx))
        try:
            uri = f"sip:echo@{LOOPBACK}:{kamailio.tls_port};transport=tls"
            host, local_port = peer.local
            body = sdp_offer(free_udp_port())
            invite = (
                f"INVITE {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS {host}:{local_port};rport;branch=z9hG4bK{secrets.token_hex(6)}"
                f"\r\nFrom: <sip:pbx@{LOOPBACK}>;tag=1\r\nTo: <{uri}>\r\n"
                f"Call-ID: {secrets.token_hex(8)}\r\nCSeq: 1 INVITE\r\n"
                f"Contact: <sip:pbx@{host}:{local_port};transport=tls>\r\nMax-Forwards: 70\r\n"
                f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
            )
            peer.writer.write(invite.encode())
            answer = await final_answer(peer)
        finally:
            peer.close()
        status = answer.split(b"\r\n", 1)[0]
        print(f"\nKamailio refused by the gateway ({reason}): the PBX got {status.decode()!r}")
        assert status.startswith((b"SIP/2.0 5", b"SIP/2.0 408")), (
            status,
            context(kamailio, gateway),
        )
        assert not gateway.find("call.received")
        assert gateway.returncode is None


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to cut a connection")
async def test_the_gateways_bye_goes_through_kamailio_when_its_connection_is_gone(
    tmp_path: Path, pki: Pki
) -> None:
    """The connection Kamailio opened to the gateway is reset mid-call (`ss -K`): the
    gateway's BYE goes over a new verified connection to the first hop of its route set
    (Kamailio's Record-Route, mutual TLS with the gateway's certificate), not to the caller's
    Contact, and Kamailio hands it to the caller on the caller's connection (its Contact names
    a port nobody listens on: only the ;alias Kamailio added finds the caller)."""
    (tmp_path / "gw").mkdir()
    config = pki.gateway_config(limits={"max_call_s": 3})
    pbx = "127.0.0.2"  # the only trusted source: the gateway's new connection is let in as
    # a gateway's (its IP, an in-dialog request on TLS), not by the source ACL
    async with (
        GatewayProcess(tmp_path / "gw", config) as gateway,
        Kamailio(
            tmp_path / "kamailio", [tls_port(gateway)], tls=pki.kamailio_tls(), trusted=(pbx,)
        ) as kamailio,
    ):  # fmt: skip
        assert kamailio.tls_port is not None
        port = kamailio.tls_port
        peer = await TlsPeer.connect(port, client_context(pki.ca, pki.pbx), source=pbx)
        try:
            host, local_port = peer.local
            call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
            uri = f"sip:echo@{LOOPBACK}:{port};transport=tls"
            body = sdp_offer(free_udp_port())
            nowhere = free_udp_port(also_tcp=True)  # the Contact's port: nobody listens there
            common = (
                f"From: <sip:pbx@{pbx}>;tag={tag}\r\nCall-ID: {call_id}\r\n"
                f"Contact: <sip:pbx@{host}:{nowhere};transport=tls>\r\nMax-Forwards: 70\r\n"
            )
            via = f"Via: SIP/2.0/TLS {host}:{local_port};rport;branch=z9hG4bK"
            peer.writer.write(
                (
                    f"INVITE {uri} SIP/2.0\r\n{via}{secrets.token_hex(6)}\r\n{common}"
                    f"To: <{uri}>\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}"
                ).encode()
            )
            answer = await final_answer(peer)
            assert answer.startswith(b"SIP/2.0 200"), answer
            route = ", ".join(route_set(answer))
            target = header(answer, "Contact").strip("<>")
            peer.writer.write(
                (
                    f"ACK {target} SIP/2.0\r\n{via}{secrets.token_hex(6)}\r\n{common}"
                    f"To: {header(answer, 'To')}\r\nRoute: {route}\r\nCSeq: 1 ACK\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode()
            )
            await gateway.wait_for("call.answered", timeout=TIMEOUT)
            # Reset Kamailio's connection to the gateway (its socket toward the TLS port).
            cut = await asyncio.create_subprocess_exec(
                "ss", "-K", "dst", LOOPBACK, "dport", "=", f":{tls_port(gateway)}",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            async with asyncio.timeout(TIMEOUT):
                await cut.wait()
            if cut.returncode != 0:
                pytest.skip("ss -K cannot close sockets here (needs root and INET_DIAG_DESTROY)")
            async with asyncio.timeout(TIMEOUT):
                bye = await read_message(peer.reader)
            assert bye.startswith(b"BYE "), bye
            assert header(bye, "Call-ID") == call_id
            ok = [b"SIP/2.0 200 OK"]
            for name in ("Via", "From", "To", "Call-ID", "CSeq"):
                ok.append(f"{name}: {header(bye, name)}".encode())
            peer.writer.write(b"\r\n".join([*ok, b"Content-Length: 0", b"", b""]))
        finally:
            peer.close()
        ended = await gateway.wait_for("call.ended", timeout=TIMEOUT)
        assert ended["reason"] == "max_call_duration"
        connected = await gateway.wait_for("sip.tls_connected", timeout=TIMEOUT)
        assert connected["peer"] == f"{LOOPBACK}:{port}", connected  # Kamailio, not the Contact
        assert not gateway.find("sip.tls_refused"), gateway.find("sip.tls_refused")
