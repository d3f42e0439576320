"""SIPp scenarios written for one expectation each (exit code 0 = it was met)."""

from __future__ import annotations

from pathlib import Path

from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port

_SEND_INVITE = """  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio {media_port} RTP/AVP {formats}
{rtpmaps}
    ]]>
  </send>"""

_INVITE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="INVITE answered with {status}">
{invite}
  <recv response="100" optional="true"/>
  <recv response="{status}">
{checks}
  </recv>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
{references}
</scenario>
"""

_OPTIONS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS answered with {status}">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="{status}"/>
</scenario>
"""

_HEADER_CHECK = (
    '    <action><ereg regexp="{regexp}" search_in="hdr" header="{header}:" '
    'check_it="true" assign_to="dummy_{n}"/></action>'
)

PCMU = ("0 101", ["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"])
G729_ONLY = ("18", ["a=rtpmap:18 G729/8000"])


def _invite(media_port: str, offer: tuple[str, list[str]]) -> str:
    formats, rtpmaps = offer
    return _SEND_INVITE.format(
        media_port=media_port,
        formats=formats,
        rtpmaps="\n".join(f"      {line}" for line in rtpmaps),
    )


def invite_expecting(
    path: Path,
    status: int,
    *,
    offer: tuple[str, list[str]] = PCMU,
    headers: dict[str, str] | None = None,
) -> Path:
    """An INVITE that must get `status` (after an optional 100), then ACKs it.

    `headers` maps a header name to a regexp its value must match in that response.
    """
    checks = "\n".join(
        _HEADER_CHECK.format(regexp=regexp, header=name, n=i)
        for i, (name, regexp) in enumerate((headers or {}).items())
    )
    names = ",".join(f"dummy_{i}" for i in range(len(headers or {})))
    references = f'  <Reference variables="{names}"/>' if names else ""
    body = _INVITE.format(
        status=status,
        invite=_invite("[media_port]", offer),
        checks=checks,
        references=references,
    )
    path.write_text(body)
    return path


def options_expecting(path: Path, status: int) -> Path:
    path.write_text(_OPTIONS.format(status=status))
    return path


_PAUSE_BYE = """  <pause milliseconds="{pause_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


def answered_call(path: Path, pause_ms: int = 500) -> Path:
    """An INVITE that must be answered 200; ACK, `pause_ms` of call, then BYE (must get 200)."""
    invite_expecting(path, 200)
    path.write_text(path.read_text().replace("</scenario>\n", _PAUSE_BYE.format(pause_ms=pause_ms)))
    return path


_UAC_CALL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call whose media is another process's socket ([rtp_port])">
{invite}
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
{ending}"""

_WAIT_FOR_BYE = """  <recv request="BYE" timeout="{timeout_ms}"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def call_until_bye(path: Path, bye_timeout_s: float = 25.0) -> Path:
    """A PCMU call that must be answered (200, ACK), then ended by the gateway's BYE."""
    invite_expecting(path, 200)
    bye = _WAIT_FOR_BYE.format(timeout_ms=int(bye_timeout_s * 1000))
    path.write_text(path.read_text().replace("</scenario>\n", bye))
    return path


def uac_call(path: Path, *, hang_up_after_ms: int | None = None, timeout_ms: int = 60_000) -> Path:
    """A PCMU call whose SDP offers the port given as ``-key rtp_port N`` (a Python RTP caller).

    Ends with the caller's BYE after ``hang_up_after_ms``, or else waits (up to
    ``timeout_ms``) for the gateway's BYE.
    """
    ending = (
        _WAIT_FOR_BYE.format(timeout_ms=timeout_ms)
        if hang_up_after_ms is None
        else _PAUSE_BYE.format(pause_ms=hang_up_after_ms)
    )
    invite = _invite("[rtp_port]", PCMU)
    path.write_text(_UAC_CALL.replace("{invite}", invite).replace("{ending}", ending))
    return path


def sipp_dial(
    workdir: Path,
    gateway_port: int,
    rtp_port: int,
    *,
    hang_up_after_ms: int | None = None,
    timeout_ms: int = 60_000,
) -> Sipp:
    """SIPp calling the gateway for a Python RTP caller listening on `rtp_port`."""
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = uac_call(
        workdir / "uac.xml", hang_up_after_ms=hang_up_after_ms, timeout_ms=timeout_ms
    )
    sip_port = free_udp_port()
    args: list[str | int] = ["-sf", scenario, "-key", "rtp_port", rtp_port, "-m", 1]
    args += ["-i", LOOPBACK, "-p", sip_port, "-mp", free_port_block(4), "-s", "agent"]
    return Sipp(workdir, [*args, f"{LOOPBACK}:{gateway_port}"], sip_port=sip_port)
