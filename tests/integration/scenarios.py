"""SIPp scenarios written for one expectation each (exit code 0 = it was met)."""

from __future__ import annotations

from pathlib import Path

_INVITE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="INVITE answered with {status}">
  <send retrans="500">
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
      m=audio [media_port] RTP/AVP {formats}
{rtpmaps}
    ]]>
  </send>
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
    formats, rtpmaps = offer
    checks = "\n".join(
        _HEADER_CHECK.format(regexp=regexp, header=name, n=i)
        for i, (name, regexp) in enumerate((headers or {}).items())
    )
    names = ",".join(f"dummy_{i}" for i in range(len(headers or {})))
    references = f'  <Reference variables="{names}"/>' if names else ""
    body = _INVITE.format(
        status=status,
        formats=formats,
        rtpmaps="\n".join(f"      {line}" for line in rtpmaps),
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


_BYE_FROM_GATEWAY = """  <recv request="BYE" timeout="{bye_timeout_ms}"/>
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
    bye = _BYE_FROM_GATEWAY.format(bye_timeout_ms=int(bye_timeout_s * 1000))
    path.write_text(path.read_text().replace("</scenario>\n", bye))
    return path
