"""SDP answers: our codec preference, the offer's telephone-event payload type, 488 cases."""

from __future__ import annotations

import ipaddress

import pytest
from aiosipua import SdpMessage, parse_sdp, serialize_sdp

from gateway.sip.door import Door
from gateway.sip.sdp import NotAcceptable, SdpSession, build_answer, plan_media


def offer(m_line: str, *attrs: str, c: str = "192.0.2.10") -> str:
    lines = ["v=0", f"o=- 1 1 IN IP4 {c}", "s=-", f"c=IN IP4 {c}", "t=0 0", m_line, *attrs]
    return "\r\n".join(lines) + "\r\n"


def test_our_preference_wins_and_telephone_event_keeps_the_offered_pt() -> None:
    sdp = parse_sdp(
        offer(
            "m=audio 4000 RTP/AVP 8 0 96",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:96 telephone-event/8000",
            "a=fmtp:96 0-16",
        )
    )
    plan = plan_media(sdp, ["PCMU", "PCMA"])
    assert (plan.codec.name, plan.payload_type, plan.dtmf_payload_type) == ("PCMU", 0, 96)
    assert plan.remote == ("192.0.2.10", 4000)
    text = serialize_sdp(build_answer(sdp, plan, "192.0.2.1", 10002))
    assert "m=audio 10002 RTP/AVP 0 96\r\n" in text
    assert "a=rtpmap:96 telephone-event/8000" in text
    assert "c=IN IP4 192.0.2.1" in text
    # Not our own 101 beside the offered 96 (the o= line's random numbers may hold "101").
    media = [line for line in text.split("\r\n") if line.startswith(("m=", "a="))]
    assert not [line for line in media if "101" in line]


def test_pcma_only_offer_gets_pcma_and_no_dtmf_when_not_offered() -> None:
    sdp = parse_sdp(offer("m=audio 4000 RTP/AVP 8", "a=ptime:30"))
    plan = plan_media(sdp, ["PCMU", "PCMA"])
    assert (plan.codec.name, plan.dtmf_payload_type, plan.ptime_ms) == ("PCMA", None, 30)
    text = serialize_sdp(build_answer(sdp, plan, "192.0.2.1", 10002))
    assert "m=audio 10002 RTP/AVP 8\r\n" in text
    assert "telephone-event" not in text
    assert "a=ptime:30" in text


@pytest.mark.parametrize(
    "body",
    [
        offer("m=audio 4000 RTP/AVP 18", "a=rtpmap:18 G729/8000"),
        offer("m=audio 0 RTP/AVP 0"),
        offer("m=video 4000 RTP/AVP 96", "a=rtpmap:96 H264/90000"),
        offer("m=audio 4000 RTP/SAVP 0"),
    ],
)
def test_unanswerable_offers_are_not_acceptable(body: str) -> None:
    with pytest.raises(NotAcceptable):
        plan_media(parse_sdp(body), ["PCMU", "PCMA"])


def test_hold_address_means_remote_unknown_until_latched() -> None:
    plan = plan_media(parse_sdp(offer("m=audio 4000 RTP/AVP 0", c="0.0.0.0")), ["PCMU"])
    assert plan.remote is None


def test_media_allow_to_refuses_a_c_address_elsewhere() -> None:
    """In an offer, a re-INVITE's offer and the ACK's late answer alike."""
    inside = parse_sdp(offer("m=audio 4000 RTP/AVP 0", c="192.0.2.10"))
    outside = parse_sdp(offer("m=audio 4000 RTP/AVP 0", c="203.0.113.9"))
    mapped = parse_sdp(
        offer("m=audio 4000 RTP/AVP 0", c="192.0.2.10").replace(
            "c=IN IP4 192.0.2.10", "c=IN IP6 ::ffff:203.0.113.9"
        )
    )
    held = parse_sdp(offer("m=audio 4000 RTP/AVP 0", c="0.0.0.0"))
    door = Door([ipaddress.ip_network("192.0.2.0/24")])
    session = SdpSession(["PCMU"], "192.0.2.1", 10002, allow_to=door)
    assert session.first_plan(inside).remote == ("192.0.2.10", 4000)
    for sdp in (outside, mapped):
        with pytest.raises(NotAcceptable, match=r"outside media\.allow_to"):
            session.first_plan(sdp)
    session.answer(inside)
    with pytest.raises(NotAcceptable):
        session.answer(outside)  # a re-INVITE's offer
    assert session.plan is not None and session.plan.remote == ("192.0.2.10", 4000)
    assert session.answer(held)[0].remote is None  # hold names no address: nothing to check
    late = SdpSession(["PCMU"], "192.0.2.1", 10002, allow_to=door)
    late.offer()
    with pytest.raises(NotAcceptable):
        late.accept_answer(outside)
    anywhere = SdpSession(["PCMU"], "192.0.2.1", 10002)  # no door: unchecked
    assert anywhere.first_plan(outside).remote == ("203.0.113.9", 4000)


def _answer(m_line: str, *attrs: str) -> SdpMessage:
    return parse_sdp(offer(m_line, *attrs, c="192.0.2.20"))


def test_our_offer_names_every_codec_and_the_answer_chooses() -> None:
    """RFC 3264 §6.1: the call is in the first of the answer's formats that we offered."""
    session = SdpSession(["opus", "G722", "PCMU", "PCMA"], "192.0.2.1", 10002)
    text = serialize_sdp(session.offer())
    assert "m=audio 10002 RTP/AVP 111 9 0 8 101 102\r\n" in text
    assert "a=rtpmap:9 G722/8000\r\n" in text and "a=rtpmap:8 PCMA/8000\r\n" in text
    assert "a=fmtp:111 " in text  # Opus's own parameters (RFC 7587 §7)
    assert session.first_plan(None).codec.name == "opus"
    plan = session.accept_answer(
        _answer(
            "m=audio 5000 RTP/AVP 18 8 0 101",
            "a=rtpmap:18 G729/8000",
            "a=rtpmap:101 telephone-event/8000",
        )
    )
    assert (plan.codec.name, plan.payload_type, plan.dtmf_payload_type) == ("PCMA", 8, 101)
    assert plan.remote == ("192.0.2.20", 5000)
    # Within the call, an offer names only the codec in use.
    again = serialize_sdp(session.offer())
    assert "m=audio 10002 RTP/AVP 8 101\r\n" in again and "PCMU" not in again


def test_an_answer_naming_nothing_we_offered_or_another_pt_is_refused() -> None:
    session = SdpSession(["PCMU", "PCMA"], "192.0.2.1", 10002)
    session.offer()
    with pytest.raises(NotAcceptable):
        session.accept_answer(_answer("m=audio 5000 RTP/AVP 9", "a=rtpmap:9 G722/8000"))
    session.offer()
    with pytest.raises(NotAcceptable):  # Opus never offered: not taken from an answer
        session.accept_answer(_answer("m=audio 5000 RTP/AVP 111", "a=rtpmap:111 opus/48000/2"))
    session.offer()
    plan = session.accept_answer(_answer("m=audio 5000 RTP/AVP 0 8"))  # static types, no rtpmap
    assert plan.codec.name == "PCMU"
