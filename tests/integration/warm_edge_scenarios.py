"""SIPp scenarios for a warm transfer's edges: the caller's side whose REFER fails after
202 (NOTIFY 503), that waits for our BYE once bridged, or that hangs up while the target
rings; and a target that answers, then hangs up (or waits for our BYE)."""

from __future__ import annotations

from pathlib import Path

from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .scenarios import _CALLER_BYE, _UAC_CALL, PCMU, _caller_request, _invite, answer_bye
from .warm_scenarios import _REFER, _reinvite

_FAILED_NOTIFY = """  <send retrans="500">
    <![CDATA[
{notify_request}      Contact: sip:sipp@[local_ip]:[local_port]
      Event: refer
      Subscription-State: terminated;reason=noresource
      Max-Forwards: 70
      Content-Type: message/sipfrag;version=2.0
      Content-Length: [len]

      SIP/2.0 503 Service Unavailable
    ]]>
  </send>
  <recv response="200"/>
"""


def edge_caller(path: Path, edge: str, *, pause_ms: int = 4000) -> Path:
    """The caller's side, held by the gateway's re-INVITE (sendonly checked), then:

    "blind_bye" (not held): takes a blind REFER (202) and hangs up at once, no NOTIFY;

    "notify503": takes the REFER (202), reports the new call failed (NOTIFY sipfrag 503),
    is taken off hold (re-INVITE sendrecv checked: to be bridged), hangs up after `pause_ms`
    (the bridged conversation);
    "refer_pending": takes the REFER (202) and says no more (no NOTIFY), then comes off
    hold (re-INVITE sendrecv checked) and hangs up after `pause_ms`;
    "refused_then_bye": refuses the REFER (405), is taken off hold (re-INVITE sendrecv) and
    waits for the gateway's BYE;
    "resumed": comes off hold (re-INVITE sendrecv checked), hangs up after `pause_ms`;
    "hangs_up": hangs up after `pause_ms`, while on hold (the target rings)."""
    steps = "" if edge == "blind_bye" else _reinvite("sendonly", "recvonly", 2, 1)
    if edge == "blind_bye":  # a blind REFER taken, then BYE before any NOTIFY
        steps += _REFER.format(status="202 Accepted").replace(
            "Replaces=[^>]*%3Bto-tag%3D[^>]*%3Bfrom-tag%3D", "sip:600@pbx.example"
        )
        steps += _CALLER_BYE.format(pause_ms=200, bye_request=_caller_request("BYE", 2))
    elif edge == "notify503":
        steps += _REFER.format(status="202 Accepted")
        steps += _FAILED_NOTIFY.format(notify_request=_caller_request("NOTIFY", 2))
        steps += _reinvite("sendrecv", "sendrecv", 3, 2)  # off hold, to be bridged
        steps += _CALLER_BYE.format(pause_ms=pause_ms, bye_request=_caller_request("BYE", 3))
    elif edge == "refer_pending":
        steps += _REFER.format(status="202 Accepted")  # and no NOTIFY: the PBX is slow
        steps += _reinvite("sendrecv", "sendrecv", 3, 2)
        steps += _CALLER_BYE.format(pause_ms=pause_ms, bye_request=_caller_request("BYE", 2))
    elif edge == "refused_then_bye":
        steps += _REFER.format(status="405 Method Not Allowed")
        steps += _reinvite("sendrecv", "sendrecv", 3, 2)  # off hold, to be bridged
        steps += answer_bye(40_000) + "\n</scenario>\n"
    elif edge == "resumed":
        steps += _reinvite("sendrecv", "sendrecv", 3, 2)
        steps += _CALLER_BYE.format(pause_ms=pause_ms, bye_request=_caller_request("BYE", 2))
    elif edge == "hangs_up":
        steps += _CALLER_BYE.format(pause_ms=pause_ms, bye_request=_caller_request("BYE", 2))
    else:
        raise ValueError(edge)
    names = ",".join(n for n in ("dir1", "dir2", "replaces") if f'"{n}"' in steps)
    steps = steps.replace("</scenario>", f'  <Reference variables="{names}"/>\n</scenario>')
    invite = _invite("[rtp_port]", PCMU)
    path.write_text(_UAC_CALL.replace("{invite}", invite).replace("{ending}", steps))
    return path


def edge_caller_sipp(workdir: Path, gateway_port: int, rtp_port: int, edge: str) -> Sipp:
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = edge_caller(workdir / "uac.xml", edge)
    sip_port = free_udp_port()
    args: list[str | int] = ["-sf", scenario, "-key", "rtp_port", rtp_port, "-m", 1]
    args += ["-i", LOOPBACK, "-p", sip_port, "-mp", free_port_block(4), "-s", "agent"]
    return Sipp(workdir, [*args, f"{LOOPBACK}:{gateway_port}"], sip_port=sip_port)


_ANSWER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a target that answers, then {then}">
  <recv request="INVITE" rrs="true"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]human[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:600@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

{sdp}    ]]>
  </send>
  <recv request="ACK"/>
{ending}</scenario>
"""

_TARGET_BYE = """  <pause milliseconds="{pause_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:600@[local_ip]:[local_port]>;tag=[pid]human[call_number]
      To: [$caller]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
"""


_TARGET_SDP = """      v=0
      o=human 1 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv
"""


def _answer(then: str, ending: str) -> str:
    """The human's side: answers our INVITE (PCMU, sendrecv), takes the ACK, then `ending`."""
    return _ANSWER.format(then=then, sdp=_TARGET_SDP.format(version=1), ending=ending)


def _target_request(method: str, cseq: int, sdp: bool) -> str:
    """A request the human (SIPp, the UAS of our INVITE) sends in the dialog."""
    body = "      Content-Length: 0\n\n"
    if sdp:
        body = "      Content-Type: application/sdp\n      Content-Length: [len]\n\n"
        body += _TARGET_SDP.format(version=2)
    return f"""  <send{' retrans="500"' if method != "ACK" else ""}>
    <![CDATA[
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:600@[local_ip]:[local_port]>;tag=[pid]human[call_number]
      To: [$caller]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:600@[local_ip]:[local_port]>
      Max-Forwards: 70
{body}    ]]>
  </send>
"""


_OUR_ANSWER = """  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP 0" search_in="body" check_it="true" assign_to="m"/>
      <ereg regexp="a=sendrecv" search_in="body" check_it="true" assign_to="dir"/>
    </action>
  </recv>
"""


def reinviting_target(
    workdir: Path, reinvite_after_ms: int, bye_after_ms: int, *, offer: bool = True
) -> Sipp:
    """A SIPp UAS that answers the INVITE, re-INVITEs with the same SDP after
    `reinvite_after_ms` (as a PBX refreshes the session or moves the media), expects 200 with
    our SDP (PCMU, sendrecv), ACKs it, and hangs up `bye_after_ms` later. `offer` False: the
    re-INVITE has no SDP, our 200 offers, and its ACK carries the answer (RFC 3261 §14.1)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ending = (
        f'  <pause milliseconds="{reinvite_after_ms}"/>\n'
        + _target_request("INVITE", 1, sdp=offer)
        + _OUR_ANSWER
        + _target_request("ACK", 1, sdp=not offer)
        + _TARGET_BYE.format(pause_ms=bye_after_ms).replace("CSeq: 1 BYE", "CSeq: 2 BYE")
    )
    text = _answer(then="re-INVITEs, then hangs up", ending=ending)
    text = text.replace('<recv request="INVITE" rrs="true"/>', _CAPTURE, 1)
    text = text.replace("</scenario>", '  <Reference variables="m,dir"/>\n</scenario>')
    scenario = workdir / "reinvite.xml"
    scenario.write_text(text)
    return Sipp.uas(workdir, scenario=scenario, name="target")


def timed_target(workdir: Path, session_expires: str) -> Sipp:
    """A SIPp UAS whose 200 puts a session timer in force (`session_expires`, e.g.
    "8;refresher=uas": the target refreshes) and then never refreshes: it waits for our
    BYE."""
    workdir.mkdir(parents=True, exist_ok=True)
    text = _answer(then="never refreshes", ending=answer_bye(60_000) + "\n")
    text = text.replace(
        "      Content-Type: application/sdp\n",
        f"      Session-Expires: {session_expires}\n      Require: timer\n"
        "      Content-Type: application/sdp\n",
        1,
    )
    scenario = workdir / "timed.xml"
    scenario.write_text(text)
    return Sipp.uas(workdir, scenario=scenario, name="target")


_CAPTURE = (
    '<recv request="INVITE" rrs="true">\n    <action>\n      <ereg regexp=".*" '
    'search_in="hdr" header="From:" assign_to="caller"/>\n    </action>\n  </recv>'
)


def answering_target(workdir: Path, bye_after_ms: int | None, *, to_tag: bool = True) -> Sipp:
    """A SIPp UAS that answers the one INVITE 200 (PCMU), then sends its BYE after
    `bye_after_ms`, or (None) waits for ours. `to_tag` False: its 200 carries no To tag (a
    broken phone: its dialog cannot be named in a Replaces)."""
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / "answer.xml"
    if bye_after_ms is None:
        text = _answer(then="waits for our BYE", ending=answer_bye(60_000) + "\n")
        if not to_tag:
            text = text.replace("[last_To:];tag=[pid]human[call_number]", "[last_To:]", 1)
    else:
        text = _answer(then="hangs up", ending=_TARGET_BYE.format(pause_ms=bye_after_ms))
        text = text.replace('<recv request="INVITE" rrs="true"/>', _CAPTURE, 1)
    scenario.write_text(text)
    return Sipp.uas(workdir, scenario=scenario, name="target")
