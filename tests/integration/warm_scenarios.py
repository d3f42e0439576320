"""SIPp scenarios for warm transfers: the caller's side (a PBX) that is put on hold by the
gateway's re-INVITE, then takes or refuses the REFER with Replaces; and a busy target."""

from __future__ import annotations

from pathlib import Path

from .peers import LOOPBACK, Baresip, Sipp, free_port_block, free_udp_port
from .scenarios import _CALLER_BYE, _UAC_CALL, PCMU, _caller_request, _invite, answer_bye

# The gateway's re-INVITE: the SDP's direction is checked (the scenario fails otherwise),
# answered 200 with our SDP (its direction the mirror), its ACK taken.
_REINVITE = """  <recv request="INVITE" timeout="30000">
    <action>
      <ereg regexp="a={direction}" search_in="body" check_it="true" assign_to="dir{n}"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: sip:sipp@[local_ip]:[local_port]
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 {version} IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [rtp_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a={answer}
    ]]>
  </send>
  <recv request="ACK"/>
"""

# The REFER: its Refer-To must carry Replaces (RFC 3891), escaped as a URI header.
_REFER = """  <recv request="REFER" timeout="60000">
    <action>
      <ereg regexp="Replaces=[^>]*%3Bto-tag%3D[^>]*%3Bfrom-tag%3D" search_in="hdr"
            header="Refer-To:" check_it="true" assign_to="replaces"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: sip:sipp@[local_ip]:[local_port]
      Content-Length: 0

    ]]>
  </send>
"""

_NOTIFY = """  <send retrans="500">
    <![CDATA[
{notify_request}      Contact: sip:sipp@[local_ip]:[local_port]
      Event: refer
      Subscription-State: terminated;reason=noresource
      Max-Forwards: 70
      Content-Type: message/sipfrag;version=2.0
      Content-Length: [len]

      SIP/2.0 200 OK
    ]]>
  </send>
  <recv response="200"/>
"""


def _reinvite(direction: str, answer: str, version: int, n: int) -> str:
    return _REINVITE.format(direction=direction, answer=answer, version=version, n=n)


def held_caller(path: Path, refer: str | None, *, pause_ms: int = 6000) -> Path:
    """A call the gateway puts on hold (re-INVITE sendonly, answered recvonly).

    refer "202": the REFER with Replaces is taken (202, NOTIFY 200), then the gateway's BYE;
    refer "405 Method Not Allowed" (or another refusal): refused, the gateway takes the
    caller off hold (re-INVITE sendrecv: the bridged human must hear it) and the caller hangs
    up after `pause_ms` (the bridged conversation); None: the caller comes off hold
    (re-INVITE sendrecv) and hangs up after `pause_ms`."""
    steps = _reinvite("sendonly", "recvonly", 2, 1)
    if refer == "202":
        steps += _REFER.format(status="202 Accepted")
        steps += _NOTIFY.format(notify_request=_caller_request("NOTIFY", 2))
        steps += answer_bye(30_000) + "\n</scenario>\n"
    elif refer is not None:
        steps += _REFER.format(status=refer)
        steps += _reinvite("sendrecv", "sendrecv", 3, 2)
        steps += _CALLER_BYE.format(pause_ms=pause_ms, bye_request=_caller_request("BYE", 2))
    else:
        steps += _reinvite("sendrecv", "sendrecv", 3, 2)
        steps += _CALLER_BYE.format(pause_ms=pause_ms, bye_request=_caller_request("BYE", 2))
    names = ",".join(n for n in ("dir1", "dir2", "replaces") if f'"{n}"' in steps)
    steps = steps.replace("</scenario>", f'  <Reference variables="{names}"/>\n</scenario>')
    invite = _invite("[rtp_port]", PCMU)
    path.write_text(_UAC_CALL.replace("{invite}", invite).replace("{ending}", steps))
    return path


def held_caller_sipp(workdir: Path, gateway_port: int, rtp_port: int, refer: str | None) -> Sipp:
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = held_caller(workdir / "uac.xml", refer)
    sip_port = free_udp_port()
    args: list[str | int] = ["-sf", scenario, "-key", "rtp_port", rtp_port, "-m", 1]
    args += ["-i", LOOPBACK, "-p", sip_port, "-mp", free_port_block(4), "-s", "agent"]
    return Sipp(workdir, [*args, f"{LOOPBACK}:{gateway_port}"], sip_port=sip_port)


_BUSY = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a busy target (it rings 1.5 s first: the caller hears the music)">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]busy[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="1500"/>
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]busy[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""


def busy_target(workdir: Path) -> Sipp:
    """A SIPp UAS that answers the one INVITE it gets with 486 (its messages traced)."""
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / "busy.xml"
    scenario.write_text(_BUSY)
    return Sipp.uas(workdir, scenario=scenario, name="target")


class BaresipCallee(Baresip):
    """baresip as the human taking the transfer: it dials nobody and answers the one call
    it gets at once (answermode=auto); its microphone is `speech_wav`, what it hears lands
    in its rec dir (``result().received_wav``)."""

    def write_config(self) -> Path:
        path = super().write_config()
        accounts = path / "accounts"
        accounts.write_text(accounts.read_text().rstrip("\n") + ";answermode=auto\n")
        return path

    @property
    def argv(self) -> list[str]:
        return ["baresip", "-f", str(self.config_dir), "-t", str(self.max_call_seconds)]

    def address(self) -> str:
        """Its account's URI (baresip answers 404 to any other user)."""
        return f"sip:{self.caller_user}@{LOOPBACK}:{self.caller_port}"


_RINGING_FOREVER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a target that rings until CANCELled">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ring[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="CANCEL" timeout="30000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ring[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ring[call_number]
      [last_Call-ID:]
      CSeq: 1 INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""


def ringing_target(workdir: Path) -> Sipp:
    """A SIPp UAS that rings and never answers: our ring timeout must CANCEL it."""
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / "ringing.xml"
    scenario.write_text(_RINGING_FOREVER)
    return Sipp.uas(workdir, scenario=scenario, name="target")
