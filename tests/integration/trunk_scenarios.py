"""SIPp scenarios for the far side of an outbound call: the trunk and the phone behind it
(UAS: the first message is the gateway's INVITE). Built from the blocks of scenarios.py."""

from __future__ import annotations

import re
from pathlib import Path

from .scenarios import (
    _VAR,
    PCMU_MAPS,
    _xml,
    ok_to_request,
    pause,
    recv_request,
    scenario,
    sdp,
    sip_message,
)

TO_TAG = "[pid]SIPpTag01[call_number]"


def reply(status: str, body: str | None = None, *, headers: tuple[str, ...] = ()) -> str:
    """A response to the last request received (the INVITE), our To tag on it."""
    return sip_message(
        f"SIP/2.0 {status}",
        [
            "[last_Via:]",
            "[last_From:]",
            f"[last_To:];tag={TO_TAG}",
            "[last_Call-ID:]",
            "[last_CSeq:]",
            "Contact: <sip:callee@[local_ip]:[local_port];transport=[transport]>",
            *headers,
        ],
        body,
    )


def recv_invite(*, body: str | None = None, headers: dict[str, str] | None = None) -> str:
    """The gateway's INVITE; its From is kept (our BYE's To); `headers` map to regexps its
    headers must match."""
    check = (
        f'<ereg regexp="{body}" search_in="body" check_it="true" assign_to="offer"/>'
        if body
        else ""
    )
    check += "".join(
        f'<ereg regexp="{_xml(rx)}" search_in="hdr" header="{name}:" check_it="true" '
        f'assign_to="v{next(_VAR)}"/>'
        for name, rx in (headers or {}).items()
    )
    return (
        '  <recv request="INVITE">\n    <action>'
        '<ereg regexp=".*" search_in="hdr" header="From:" assign_to="gwfrom"/>'
        '<ereg regexp="sips?:[^>;]*" search_in="hdr" header="Contact:" assign_to="gwcontact"/>'
        f"{check}</action>\n  </recv>"
    )


def bye() -> str:
    """Our BYE in the dialog the gateway's INVITE made (we are its UAS)."""
    return callee_request("BYE", 1)


def callee_request(method: str, cseq: int, body: str | None = None) -> str:
    """A request the callee (SIPp, the UAS of our INVITE) sends in the dialog: to our
    Contact, its own tag in From, ours in To."""
    return sip_message(
        f"{method} [$gwcontact] SIP/2.0",
        [
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
            f"From: <sip:callee@[local_ip]:[local_port]>;tag={TO_TAG}",
            "To: [$gwfrom]",
            "[last_Call-ID:]",
            f"CSeq: {cseq} {method}",
            "Contact: <sip:callee@[local_ip]:[local_port];transport=[transport]>",
            "Max-Forwards: 70",
        ],
        body,
    )


REFERENCES = '  <Reference variables="gwfrom,gwcontact,offer"/>'


def answering(path: Path, *, talk_ms: int = 1500, ringing_ms: int = 200) -> Path:
    """Rings, answers with SDP, hears the agent for `talk_ms`, hangs up."""
    return scenario(
        path,
        recv_invite(body="m=audio"),
        reply("180 Ringing"),
        pause(ringing_ms),
        reply("200 OK", sdp()),
        recv_request("ACK"),
        pause(talk_ms),
        bye(),
        '  <recv response="200"/>',
        REFERENCES,
    )


def refusing(path: Path, status: str) -> Path:
    """Answers the INVITE with `status` (486 Busy Here ...) and waits for its ACK."""
    return scenario(
        path,
        recv_request("INVITE"),
        reply("100 Trying"),
        reply(status),
        recv_request("ACK"),
    )


def ringing_forever(path: Path, *, silent_ms: int = 0) -> Path:
    """Rings until the gateway CANCELs: 200 to the CANCEL, 487 to the INVITE, then its ACK.
    With `silent_ms`, no response at all for that long first (a CANCEL then fails SIPp's
    scenario: RFC 3261 §9.1 says to wait for a provisional)."""
    silent = [pause(silent_ms)] if silent_ms else []
    return scenario(
        path,
        recv_request("INVITE"),
        *silent,
        reply("180 Ringing"),
        recv_request("CANCEL"),
        sip_message(
            "SIP/2.0 200 OK",
            ["[last_Via:]", "[last_From:]", "[last_To:]", "[last_Call-ID:]", "[last_CSeq:]"],
            None,
        ),
        sip_message(
            "SIP/2.0 487 Request Terminated",
            [
                "[last_Via:]",
                "[last_From:]",
                f"[last_To:];tag={TO_TAG}",
                "[last_Call-ID:]",
                "CSeq: 1 INVITE",
            ],
            None,
        ),
        recv_request("ACK"),
    )


def answering_our_cancel(path: Path) -> Path:
    """Rings; our CANCEL crosses its 200 OK (200 to the CANCEL, 200 to the INVITE): the
    gateway ACKs the 2xx, then ends the call with a BYE."""
    return scenario(
        path,
        recv_invite(body="m=audio"),
        reply("180 Ringing"),
        recv_request("CANCEL"),
        sip_message(
            "SIP/2.0 200 OK",
            ["[last_Via:]", "[last_From:]", "[last_To:]", "[last_Call-ID:]", "[last_CSeq:]"],
            None,
        ),
        sip_message(
            "SIP/2.0 200 OK",
            [
                "[last_Via:]",
                "[last_From:]",
                f"[last_To:];tag={TO_TAG}",
                "[last_Call-ID:]",
                "CSeq: 1 INVITE",
                "Contact: <sip:callee@[local_ip]:[local_port];transport=[transport]>",
            ],
            sdp(),
        ),
        recv_request("ACK"),
        recv_request("BYE", timeout_ms=10_000),
        ok_to_request(),
        REFERENCES,
    )


def early_media(path: Path, audio: Path, *, early_ms: int = 1500, talk_ms: int = 1500) -> Path:
    """183 with SDP and an announcement streamed before the answer, then 200 and a BYE."""
    return scenario(
        path,
        recv_invite(body="m=audio"),
        reply("183 Session Progress", sdp()),
        f'  <nop><action><exec rtp_stream="{audio},1,0"/></action></nop>',
        pause(early_ms),
        reply("200 OK", sdp()),
        recv_request("ACK"),
        pause(talk_ms),
        bye(),
        '  <recv response="200"/>',
        REFERENCES,
    )


def challenging(path: Path, *, talk_ms: int = 1000) -> Path:
    """407 with a digest challenge; the new INVITE must carry Proxy-Authorization for the
    user `gateway` answering this very nonce (SIPp checks its shape; the test recomputes the
    digest from SIPp's message log: SIPp's verifyauth reads Authorization only)."""
    challenge = 'Proxy-Authenticate: Digest realm="trunk.test", nonce="a9b8c7d6e5f4", algorithm=MD5'
    shape = (
        'Digest username="gateway", realm="trunk.test", nonce="a9b8c7d6e5f4", '
        'uri="sip:[^"]+", algorithm=MD5, response="[0-9a-f]{32}"'
    )
    return scenario(
        path,
        recv_invite(body="m=audio"),
        reply("407 Proxy Authentication Required", headers=(challenge,)),
        recv_request("ACK"),
        recv_request("INVITE", headers={"Proxy-Authorization": shape}),
        reply("200 OK", sdp()),
        recv_request("ACK"),
        pause(talk_ms),
        bye(),
        '  <recv response="200"/>',
        REFERENCES,
    )


def ivr(path: Path, media_port: int, *, info_keys: str | None = None) -> Path:
    """An IVR behind the trunk whose media is `media_port` (a Python RTP phone on loopback
    that talks and listens). With `info_keys` its SDP has no telephone-event, and SIPp checks
    that the keys come as SIP INFO (application/dtmf-relay), in order; without, it offers
    telephone-event (the phone checks the RFC 4733 events). Then it waits for our BYE."""
    telephone_event = info_keys is None
    answer = sdp(
        port=media_port,
        ip="127.0.0.1",
        formats="0 101" if telephone_event else "0",
        rtpmaps=PCMU_MAPS if telephone_event else PCMU_MAPS[:1],
    )
    keys = []
    for key in info_keys or "":
        keys += [
            recv_request(
                "INFO",
                timeout_ms=30_000,
                headers={"Content-Type": "application/dtmf-relay"},
                body=f"Signal={re.escape(key)}\\r?\\nDuration=[0-9]+",
            ),
            ok_to_request(),
        ]
    return scenario(
        path,
        recv_invite(body="m=audio"),
        reply("200 OK", answer),
        recv_request("ACK"),
        *keys,
        recv_request("BYE", timeout_ms=30_000),
        ok_to_request(),
        REFERENCES,
    )


def answering_in(path: Path, media_port: int, formats: str, rtpmaps: list[str], offer: str) -> Path:
    """A phone whose media is `media_port` (a Python RTP phone on loopback): checks our offer
    against the regexp `offer`, answers in `formats`, then waits for our BYE."""
    return scenario(
        path,
        recv_invite(body=offer),
        reply("200 OK", sdp(port=media_port, ip="127.0.0.1", formats=formats, rtpmaps=rtpmaps)),
        recv_request("ACK"),
        recv_request("BYE", timeout_ms=30_000),
        ok_to_request(),
        REFERENCES,
    )


def refreshed_by_us(path: Path) -> Path:
    """A callee with session timers (RFC 4028): 422 to our 4 s interval with Min-SE 6, then
    200 naming us the refresher (refresher=uac) and allowing UPDATE; it answers our two
    bodyless UPDATE refreshes, then hangs up."""
    refresh = [
        recv_request("UPDATE", timeout_ms=5000, headers={"Session-Expires": "^ *6;refresher=uac"}),
        ok_to_request(None, ("Session-Expires: 6;refresher=uac",)),
    ]
    timer = {"Supported": "timer", "Min-SE": "^ *2$"}
    return scenario(
        path,
        recv_invite(body="m=audio", headers={**timer, "Session-Expires": "^ *4$"}),
        reply("422 Session Interval Too Small", headers=("Min-SE: 6",)),
        recv_request("ACK"),
        recv_invite(body="m=audio", headers={**timer, "Session-Expires": "^ *6$"}),
        reply(
            "200 OK",
            sdp(),
            headers=(
                "Session-Expires: 6;refresher=uac",
                "Require: timer",
                "Allow: INVITE, ACK, BYE, UPDATE",
            ),
        ),
        recv_request("ACK"),
        *(refresh * 2),
        bye(),
        '  <recv response="200"/>',
        REFERENCES,
    )


def too_short_an_interval(path: Path) -> Path:
    """A hostile or broken callee: its 200 asks for a 1 s session (refresher=uac, us), below
    the Min-SE we sent (4); our one UPDATE must come at half of 4 s and say 4, not 1."""
    return scenario(
        path,
        recv_invite(body="m=audio", headers={"Min-SE": "^ *4$"}),
        reply(
            "200 OK",
            sdp(),
            headers=("Session-Expires: 1;refresher=uac", "Allow: INVITE, ACK, BYE, UPDATE"),
        ),
        recv_request("ACK"),
        recv_request("UPDATE", timeout_ms=5000, headers={"Session-Expires": "^ *4;refresher=uac"}),
        ok_to_request(None, ("Session-Expires: 1;refresher=uac",)),
        bye(),
        '  <recv response="200"/>',
        REFERENCES,
    )


def refreshing_then_silent(path: Path) -> Path:
    """A callee that takes the refreshes on itself (refresher=uas, 4 s) and never sends one:
    the gateway's BYE comes by 4 - 4/3 s (RFC 4028 §10)."""
    return scenario(
        path,
        recv_invite(body="m=audio", headers={"Supported": "timer"}),
        reply("200 OK", sdp(), headers=("Session-Expires: 4;refresher=uas", "Require: timer")),
        recv_request("ACK"),
        recv_request("BYE", timeout_ms=5000),
        ok_to_request(),
        REFERENCES,
    )


def holding_callee(path: Path) -> Path:
    """Answers, then holds the call (re-INVITE sendonly: our answer must say recvonly),
    resumes it (sendrecv) and hangs up; each 200 of ours is ACKed."""

    def reinvite(direction: str, answer: str, cseq: int, version: int) -> list[str]:
        return [
            pause(800),
            callee_request("INVITE", cseq, sdp(direction=direction, version=version)),
            '  <recv response="100" optional="true"/>',
            recv_response_with(200, body=f"a={answer}"),
            callee_request("ACK", cseq),
        ]

    return scenario(
        path,
        recv_invite(body="m=audio"),
        reply("200 OK", sdp()),
        recv_request("ACK"),
        *reinvite("sendonly", "recvonly", 1, 2),
        *reinvite("sendrecv", "sendrecv", 2, 3),
        pause(500),
        callee_request("BYE", 3),
        '  <recv response="200"/>',
        REFERENCES,
    )


def recv_response_with(status: int, *, body: str) -> str:
    return (
        f'  <recv response="{status}">\n    <action><ereg regexp="{body}" search_in="body" '
        f'check_it="true" assign_to="v{next(_VAR)}"/></action>\n  </recv>'
    )
