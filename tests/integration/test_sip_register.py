"""Registration mode against a SIPp registrar that checks the digest (verifyauth): a refused
first REGISTER is retried after a back-off, the challenge is answered with qop=auth, the
binding is refreshed before it expires, and the call the PBX sends to the contact is taken."""

from __future__ import annotations

from pathlib import Path

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .scenarios import SIP_TESTS, sdp, sipp_trace

pytestmark = SIP_TESTS

USER, PASSWORD = "ext200", "reg-secret"
GRANTED_S = 4  # the registrar grants this much at first: the refresh must come before


def _reply(status: str, *lines: str) -> str:
    head = ["[last_Via:]", "[last_From:]", "[last_To:];tag=reg[call_number]", "[last_Call-ID:]"]
    body = "\n".join([f"SIP/2.0 {status}", *head, "[last_CSeq:]", *lines, "Content-Length: 0"])
    return f"  <send><![CDATA[\n{body}\n\n]]></send>"


def _challenge(nonce: str) -> str:
    return _reply(
        "401 Unauthorized",
        f'WWW-Authenticate: Digest realm="pbx.test", nonce="{nonce}", qop="auth", algorithm=MD5',
    )


def _verified(n: int) -> str:
    """An authenticated REGISTER: qop=auth, and SIPp's verifyauth must accept the digest."""
    return f"""  <recv request="REGISTER">
    <action>
      <ereg regexp="qop=&quot;?auth" search_in="hdr" header="Authorization:" check_it="true"
            assign_to="qop{n}"/>
      <verifyauth assign_to="ok{n}" username="{USER}" password="{PASSWORD}"/>
      <ereg regexp="&lt;(sip:[^&gt;]*)&gt;" search_in="hdr" header="Contact:"
            assign_to="whole{n},contact"/>
    </action>
  </recv>
  <nop hide="true" test="ok{n}" next="good{n}"/>
  <recv request="BAD_DIGEST" timeout="100"/>
  <label id="good{n}"/>"""


def registrar(path: Path) -> Path:
    invite_sdp = sdp()
    call = f"""  <send><![CDATA[
INVITE [$contact] SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:pbx@[local_ip]:[local_port]>;tag=pbx[call_number]
To: <[$contact]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:pbx@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{invite_sdp}

]]></send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[
ACK [$contact] SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:pbx@[local_ip]:[local_port]>;tag=pbx[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="300"/>
  <send><![CDATA[
BYE [$contact] SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:pbx@[local_ip]:[local_port]>;tag=pbx[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>"""
    steps = [
        '  <recv request="REGISTER"/>',
        _reply("503 Service Unavailable"),  # the PBX is restarting: back off, then retry
        '  <recv request="REGISTER"/>',
        _challenge("n1"),
        _verified(1),
        _reply("200 OK", f"[last_Contact:];expires={GRANTED_S}"),
        f'  <recv request="REGISTER" timeout="{GRANTED_S * 1000}"/>',  # the refresh
        _challenge("n2"),
        _verified(2),
        _reply("200 OK", "[last_Contact:]", "Expires: 300"),
        call,  # to the Contact the gateway registered, as a PBX routes to an extension
    ]
    names = "qop1,qop2,whole1,whole2"
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="registrar">\n'
        + "\n".join(steps)
        + f'\n  <Reference variables="{names}"/>\n</scenario>\n'
    )
    return path


async def test_registers_with_digest_refreshes_backs_off_and_takes_the_call(
    tmp_path: Path,
) -> None:
    port = free_udp_port()
    sipp = Sipp(
        tmp_path,
        [
            "-sf", registrar(tmp_path / "registrar.xml"), "-p", port, "-i", LOOPBACK,
            "-mp", free_port_block(4), "-m", 1, "-nr", "-timeout", 40, "-timeout_error",
        ],
        sip_port=port,
        name="registrar",
    )  # fmt: skip
    config = {
        "sip": {
            "register": {
                "registrar": f"{LOOPBACK}:{port}",
                "user": USER,
                "password_env": "GW_REGISTER_PASSWORD",
                "expires": 60,
            }
        }
    }
    async with sipp:
        gateway = GatewayProcess(tmp_path, config, env={"GW_REGISTER_PASSWORD": PASSWORD})
        async with gateway:
            code = await sipp.wait(timeout=45)
            assert code == 0, f"registrar scenario failed:\n{sipp.report()}\n{gateway.tail()}"
            ended = await gateway.wait_for("call.ended", timeout=10)
            assert ended["reason"] == "caller_bye"
            (failed,) = gateway.find("sip.register_failed")
            assert failed["reason"].startswith("503") and failed["retry_in_s"] == 1.0
            assert [e["expires_s"] for e in gateway.find("sip.registered")] == [GRANTED_S, 300]
            assert PASSWORD not in "\n".join(gateway.raw)
    trace = sipp_trace(sipp.messages_path)
    registers = [m.at for m in trace if not m.sent and m.start.startswith("REGISTER")]
    refused = next(m.at for m in trace if m.sent and m.start.startswith("SIP/2.0 503"))
    granted = next(m.at for m in trace if m.sent and m.start.startswith("SIP/2.0 200"))
    assert registers[1] - refused >= 0.9, "no back-off after the 503"
    refresh = next(at for at in registers if at > granted)
    assert 0.5 * GRANTED_S < refresh - granted < GRANTED_S, "refresh not before expiry"
