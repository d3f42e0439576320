"""SIPp scenarios written for one expectation each (exit code 0 = it was met)."""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.sip.transactions import SipTimers

from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port

SIP_TESTS = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
]
# Shrunk timers for an in-process gateway: T1 50 ms, so timer H (64*T1) is 3.2 s.
FAST_TIMERS = SipTimers(t1=0.05, t2=0.4, t4=0.2)

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


def _with_headers(invite: str, headers: dict[str, str]) -> str:
    """The INVITE with `headers` added before its Content-Type."""
    content_type = "      Content-Type: application/sdp\n"
    extra = "".join(f"      {name}: {value}\n" for name, value in headers.items())
    return invite.replace(content_type, extra + content_type, 1)


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

_ANSWER_BYE = """  <recv request="BYE"{timeout}/>
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
  </send>"""


def answer_bye(timeout_ms: int | None = None) -> str:
    """SIPp's part when the gateway hangs up: its BYE (within ``timeout_ms``), answered 200."""
    return _ANSWER_BYE.format(timeout="" if timeout_ms is None else f' timeout="{timeout_ms}"')


def _wait_for_bye(timeout_ms: int) -> str:
    return answer_bye(timeout_ms) + "\n</scenario>\n"


def call_until_bye(path: Path, bye_timeout_s: float = 25.0) -> Path:
    """A PCMU call that must be answered (200, ACK), then ended by the gateway's BYE."""
    invite_expecting(path, 200)
    bye = _wait_for_bye(int(bye_timeout_s * 1000))
    path.write_text(path.read_text().replace("</scenario>\n", bye))
    return path


def _caller_request(method: str, cseq: int | str) -> str:
    """Request line and dialog headers of a request the caller (SIPp, the UAC) sends in the
    dialog: to the gateway's Contact, with both tags."""
    return f"""      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
"""


_TRANSFEREE = """  <recv request="REFER" timeout="{timeout_ms}"/>
  <send>
    <![CDATA[
      SIP/2.0 202 Accepted
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: sip:sipp@[local_ip]:[local_port]
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
{notify_request}      Contact: sip:sipp@[local_ip]:[local_port]
      Event: refer
      Subscription-State: terminated;reason=noresource
      Max-Forwards: 70
      Content-Type: message/sipfrag;version=2.0
      Content-Length: [len]

      SIP/2.0 {outcome}
    ]]>
  </send>
  <recv response="200"/>
"""

_CALLER_BYE = """  <pause milliseconds="{pause_ms}"/>
  <send retrans="500">
    <![CDATA[
{bye_request}      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


_INFO = """  <pause milliseconds="{pause_ms}"/>
  <send retrans="500">
    <![CDATA[
{info_request}      Max-Forwards: 70
      Content-Type: {content_type}
      Content-Length: [len]

      {body}
    ]]>
  </send>
  <recv response="200"/>
"""


def info_keys_call(path: Path, keys: list[tuple[str, str]], *, pause_ms: int = 1500) -> Path:
    """A call (RTP at ``-key rtp_port``) that sends key presses as SIP INFO: each (content
    type, body) after `pause_ms`, then hangs up."""
    ending = "".join(
        _INFO.format(
            pause_ms=pause_ms,
            info_request=_caller_request("INFO", 2 + i),
            content_type=kind,
            body=body,
        )
        for i, (kind, body) in enumerate(keys)
    )
    bye = _caller_request("BYE", 2 + len(keys))
    ending += _CALLER_BYE.format(pause_ms=500, bye_request=bye)
    invite = _invite("[rtp_port]", PCMU)
    path.write_text(_UAC_CALL.replace("{invite}", invite).replace("{ending}", ending))
    return path


def transferee_call(path: Path, outcome: str, *, pause_ms: int = 3000) -> Path:
    """A call (RTP at ``-key rtp_port``) that the gateway transfers with REFER: SIPp accepts
    (202) and reports `outcome` (e.g. "200 OK", "486 Busy Here") in a sipfrag NOTIFY. On
    success it expects the gateway's BYE; otherwise it hangs up itself after `pause_ms`."""
    ending = _TRANSFEREE.format(
        timeout_ms=30_000, outcome=outcome, notify_request=_caller_request("NOTIFY", 2)
    )
    if outcome.startswith("2"):
        ending += _wait_for_bye(15_000)
    else:
        ending += _CALLER_BYE.format(pause_ms=pause_ms, bye_request=_caller_request("BYE", 3))
    invite = _invite("[rtp_port]", PCMU)
    path.write_text(_UAC_CALL.replace("{invite}", invite).replace("{ending}", ending))
    return path


def uac_call(
    path: Path,
    *,
    hang_up_after_ms: int | None = None,
    timeout_ms: int = 60_000,
    headers: dict[str, str] | None = None,
) -> Path:
    """A PCMU call whose SDP offers the port given as ``-key rtp_port N`` (a Python RTP caller).

    Ends with the caller's BYE after ``hang_up_after_ms``, or else waits (up to
    ``timeout_ms``) for the gateway's BYE. ``headers`` go into the INVITE as they are.
    """
    ending = (
        _wait_for_bye(timeout_ms)
        if hang_up_after_ms is None
        else _PAUSE_BYE.format(pause_ms=hang_up_after_ms)
    )
    invite = _with_headers(_invite("[rtp_port]", PCMU), headers or {})
    path.write_text(_UAC_CALL.replace("{invite}", invite).replace("{ending}", ending))
    return path


def sipp_dial(
    workdir: Path,
    gateway_port: int,
    rtp_port: int,
    *,
    hang_up_after_ms: int | None = None,
    timeout_ms: int = 60_000,
    transfer_outcome: str | None = None,
    headers: dict[str, str] | None = None,
) -> Sipp:
    """SIPp calling the gateway for a Python RTP caller listening on `rtp_port` (and, with
    `transfer_outcome`, taking the gateway's REFER: see transferee_call); `headers` are
    added to its INVITE."""
    workdir.mkdir(parents=True, exist_ok=True)
    if transfer_outcome is not None:
        scenario = transferee_call(workdir / "uac.xml", transfer_outcome)
    else:
        scenario = uac_call(
            workdir / "uac.xml",
            hang_up_after_ms=hang_up_after_ms,
            timeout_ms=timeout_ms,
            headers=headers,
        )
    sip_port = free_udp_port()
    args: list[str | int] = ["-sf", scenario, "-key", "rtp_port", rtp_port, "-m", 1]
    args += ["-i", LOOPBACK, "-p", sip_port, "-mp", free_port_block(4), "-s", "agent"]
    return Sipp(workdir, [*args, f"{LOOPBACK}:{gateway_port}"], sip_port=sip_port)


# --------------------------------------------------------------------------------------------
# Building blocks for scenarios that need more than one exchange. Run them with SIPp's -nr:
# then a retransmission we receive is matched against the next <recv> (so tests can count
# them) instead of SIPp answering it by resending its own last message.

_VAR = itertools.count()
PCMU_MAPS = ["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"]


def sdp(
    *,
    port: str | int = "[media_port]",
    ip: str = "[media_ip]",
    formats: str = "0 101",
    rtpmaps: tuple[str, ...] | list[str] = tuple(PCMU_MAPS),
    direction: str | None = None,
    version: int = 1,
    proto: str = "RTP/AVP",
) -> str:
    lines = [
        "v=0",
        f"o=sipp 53655765 {version} IN IP4 [local_ip]",
        "s=-",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio {port} {proto} {formats}",
        *rtpmaps,
    ]
    if direction:
        lines.append(f"a={direction}")
    return "\n".join(lines)


def sip_message(start: str, headers: list[str], body: str | None) -> str:
    if body is not None:
        headers = [*headers, "Content-Type: application/sdp", "Content-Length: [len]"]
    else:
        headers = [*headers, "Content-Length: 0"]
    text = "\n".join([start, *headers, ""]) + ("\n" + body + "\n" if body is not None else "\n")
    lines = "\n".join(f"      {line}" if line else "" for line in text.split("\n"))
    return f"  <send>\n    <![CDATA[\n{lines}\n    ]]>\n  </send>"


def _branch(name: str | None) -> str:
    return f"z9hG4bK-[pid]-[call_number]-{name}" if name else "[branch]"


def invite(
    body: str | None,
    *,
    branch: str = "inv1",
    cseq: int = 1,
    in_dialog: bool = False,
    headers: tuple[str, ...] = (),
    via_port: str | int = "[local_port]",
) -> str:
    """An INVITE (a re-INVITE with `in_dialog`); the same `branch` twice is a retransmission.

    `via_port` other than the socket's: a TCP client that names its listening port in Via
    and connects from another one, as PBXs do (the answer must come on the connection)."""
    to = "[last_To:]" if in_dialog else "To: <sip:[service]@[remote_ip]:[remote_port]>"
    return sip_message(
        "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
        [
            f"Via: SIP/2.0/[transport] [local_ip]:{via_port};branch={_branch(branch)}",
            "From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]",
            to,
            "Call-ID: [call_id]",
            f"CSeq: {cseq} INVITE",
            "Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>",
            "Max-Forwards: 70",
            *headers,
        ],
        body,
    )


def in_dialog(
    method: str,
    cseq: int,
    *,
    branch: str | None = None,
    body: str | None = None,
    via_port: str | int = "[local_port]",
    headers: tuple[str, ...] = (),
    peer_tag: bool = False,
) -> str:
    """ACK, BYE, CANCEL or UPDATE; an ACK of a 3xx-6xx and a CANCEL reuse the INVITE's
    `branch`; `headers` are added as they are. `peer_tag`: To is built from the gateway's tag
    (after SIPp received a request from it, [last_To:] would be SIPp's own)."""
    to = "[last_To:]"
    if method == "CANCEL":
        to = "To: <sip:[service]@[remote_ip]:[remote_port]>"
    elif peer_tag:
        to = "To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]"
    return sip_message(
        f"{method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
        [
            f"Via: SIP/2.0/[transport] [local_ip]:{via_port};branch={_branch(branch)}",
            "From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]",
            to,
            "Call-ID: [call_id]",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
            *headers,
        ],
        body,
    )


def ok_to_request(
    body: str | None = None, headers: tuple[str, ...] = (), status: str = "200 OK"
) -> str:
    """200 OK (or `status`) to the request just received (the gateway's BYE, UPDATE or
    re-INVITE), with `body` as SDP and `headers` added as they are."""
    return sip_message(
        f"SIP/2.0 {status}",
        ["[last_Via:]", "[last_From:]", "[last_To:]", "[last_Call-ID:]", "[last_CSeq:]", *headers],
        body,
    )


def recv(
    status: int,
    *,
    optional: bool = False,
    timeout_ms: int | None = None,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    auth: bool = False,
) -> str:
    """Expect a response; `headers` and `body` map to regexps it must match; `auth` keeps its
    challenge for the next [authentication] keyword."""
    attrs = f' response="{status}"'
    if optional:
        attrs += ' optional="true"'
    if auth:
        attrs += ' auth="true"'
    if timeout_ms:
        attrs += f' timeout="{timeout_ms}"'
    checks = [
        f'<ereg regexp="{_xml(rx)}" search_in="hdr" header="{name}:" check_it="true" '
        f'assign_to="v{next(_VAR)}"/>'
        for name, rx in (headers or {}).items()
    ]
    if body is not None:
        checks.append(
            f'<ereg regexp="{_xml(body)}" search_in="body" check_it="true" '
            f'assign_to="v{next(_VAR)}"/>'
        )
    if not checks:
        return f"  <recv{attrs}/>"
    return f"  <recv{attrs}>\n    <action>{''.join(checks)}</action>\n  </recv>"


def recv_request(
    method: str,
    *,
    timeout_ms: int | None = None,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    start: str | None = None,
) -> str:
    """Expect a request; `headers` and `body` map to regexps it must match, `start` is one
    its request line must match (its Request-URI: the dialog's remote target)."""
    extra = f' timeout="{timeout_ms}"' if timeout_ms else ""
    checks = "".join(
        f'<ereg regexp="{_xml(rx)}" search_in="hdr" header="{name}:" check_it="true" '
        f'assign_to="v{next(_VAR)}"/>'
        for name, rx in (headers or {}).items()
    )
    if start is not None:
        checks += (
            f'<ereg regexp="{_xml("^" + start)}" search_in="msg" check_it="true" '
            f'assign_to="v{next(_VAR)}"/>'
        )
    if body is not None:
        checks += (
            f'<ereg regexp="{_xml(body)}" search_in="body" check_it="true" '
            f'assign_to="v{next(_VAR)}"/>'
        )
    if not checks:
        return f'  <recv request="{method}"{extra}/>'
    return f'  <recv request="{method}"{extra}>\n    <action>{checks}</action>\n  </recv>'


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>'


def rtp_stream(audio: Path) -> str:
    """SIPp streams a raw G.711 file, looped, from its RTP port to the address in the answer
    (the call's media, while the scenario goes on)."""
    return f'  <nop><action><exec rtp_stream="{audio},-1,0"/></action></nop>'


def streaming_call(
    path: Path, audio: Path, call_ms: int, bye_answers: tuple[int, ...] = (200,)
) -> Path:
    """A call that streams `audio` (rtp_stream) for `call_ms`, then hangs up; its BYE may be
    answered with any of `bye_answers`."""
    *others, last = bye_answers
    answers = [f'  <recv response="{status}" optional="true" next="end"/>' for status in others]
    answers += [recv(last), '  <label id="end"/>'] if others else [recv(last)]
    return scenario(
        path,
        invite(sdp()),
        recv(100, optional=True),
        recv(200),
        in_dialog("ACK", 1),
        rtp_stream(audio),
        pause(call_ms),
        in_dialog("BYE", 2),
        *answers,
    )


def caller_ulaw(path: Path, seconds: float = 2.0) -> Path:
    """A caller's voice for rtp_stream: a warbling tone as raw mu-law."""
    import numpy as np

    from gateway.media.g711 import PCMU

    t = np.arange(int(seconds * 8000)) / 8000
    voice = 3000 * np.sin(2 * np.pi * 180 * t) * (0.2 + 0.8 * np.abs(np.sin(2 * np.pi * 2 * t)))
    path.write_bytes(PCMU.encode(voice.astype(np.int16)))
    return path


def scenario(path: Path, *steps: str) -> Path:
    """Write a scenario of these steps; every ereg variable is referenced (SIPp insists)."""
    body = "\n".join(steps)
    names = sorted(set(re.findall(r'assign_to="(v\d+)"', body)))
    references = f'  <Reference variables="{",".join(names)}"/>\n' if names else ""
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        f'<scenario name="{path.stem}">\n{body}\n{references}</scenario>\n'
    )
    return path


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


@dataclass(frozen=True)
class Traced:
    at: float  # seconds (SIPp's wall clock)
    sent: bool  # by SIPp
    start: str  # the start line
    transaction: tuple[str, str] = ("", "")  # (Call-ID, CSeq): retransmissions share it


def sipp_trace(path: Path) -> list[Traced]:
    """The messages of SIPp's -trace_msg log, in order."""
    out: list[Traced] = []
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for i, line in enumerate(lines[:-2]):
        match = re.match(r"^-{20,} (\d{4}-\d\d-\d\d) (\d\d):(\d\d):(\d\d\.\d+)$", line)
        if match is None:
            continue
        at = int(match[2]) * 3600 + int(match[3]) * 60 + float(match[4])
        start = next((x.strip() for x in lines[i + 2 : i + 4] if x.strip()), "")
        headers: dict[str, str] = {}
        for header in lines[i + 2 : i + 40]:
            name, colon, value = header.partition(":")
            if colon and name.strip().lower() in ("call-id", "i", "cseq"):
                headers.setdefault(name.strip().lower(), value.strip())
        call_id = headers.get("call-id", headers.get("i", ""))
        out.append(
            Traced(at, "message sent" in lines[i + 1], start, (call_id, headers.get("cseq", "")))
        )
    return out


async def run_sipp(
    workdir: Path,
    scenario_path: Path,
    port: int,
    *,
    transport: str = "u1",
    timeout: float = 40,
    calls: int = 1,
    context: Callable[[], str] = lambda: "",
    args: Sequence[str | int] = (),
) -> Sipp:
    """`calls` calls of a scenario against 127.0.0.1:`port` with -nr (see above), `args`
    added to SIPp's command line; all must pass."""
    sipp = Sipp(
        workdir,
        [
            "-sf", scenario_path, "-m", calls, "-nr", "-t", transport, "-i", LOOPBACK,
            "-p", free_udp_port(also_tcp=True), "-mp", free_port_block(4),
            "-timeout", int(timeout), "-timeout_error", "-max_socket", 10, *args,
            f"{LOOPBACK}:{port}",
        ],
        name=scenario_path.stem,
    )  # fmt: skip
    await sipp.start()
    code = await sipp.wait(timeout=timeout + 10)
    assert code == 0, f"SIPp {scenario_path.name} failed:\n{sipp.report()}\n{context()}"
    return sipp
