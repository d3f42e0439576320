"""SRTP (SDES, RFC 4568): a=crypto lines, suite negotiation, protect/unprotect, and the
stream dropping and counting forged and replayed packets."""

from __future__ import annotations

import asyncio
import base64
import os
import socket

import pytest
import structlog
from aiosipua import parse_sdp, serialize_sdp
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.media.g711 import PCMU
from gateway.media.rtp import RtpSender
from gateway.media.srtp import (
    SUITES,
    BadCrypto,
    CryptoAttribute,
    SrtpDropped,
    SrtpSession,
    available_suites,
    parse_crypto,
)
from gateway.media.stream import RtpStream
from gateway.sip.leg import CallLeg
from gateway.sip.sdp import NotAcceptable, SdpSession, SrtpPolicy, plan_media, srtp_session

KEY30 = bytes(range(30))
B64 = base64.b64encode(KEY30).decode()
OVER_UDP = SrtpPolicy(allow_insecure=True)  # optional, signalling not TLS but allowed
OVER_TLS = SrtpPolicy(secure_signalling=True)
PEER = ("192.0.2.10", 4000)


def offer(proto: str = "RTP/SAVP", *crypto: str) -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0",
             f"m=audio 4000 {proto} 0 101", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000", *(f"a=crypto:{c}" for c in crypto)]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


# --- a=crypto ---------------------------------------------------------------------------------


def test_a_crypto_line_round_trips_and_never_shows_its_key() -> None:
    attr = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}")
    assert attr == CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", KEY30)
    assert attr.value() == f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}"
    assert B64 not in repr(attr) and str(KEY30) not in repr(attr)
    # a lifetime is fine; the suite name is case-insensitive
    assert parse_crypto(f"2 aes_cm_128_hmac_sha1_32 inline:{B64}|2^31") is not None


@pytest.mark.parametrize(
    "line",
    [
        f"1 F8_128_HMAC_SHA1_80 inline:{B64}",  # a suite we do not know
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^20|1:4",  # an MKI
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64} UNENCRYPTED_SRTP",  # session parameters
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64};inline:{B64}",  # several keys
        "not a crypto line",
        "1 AES_CM_128_HMAC_SHA1_80 " + "x" * 600,
    ],
)
def test_lines_we_cannot_use_are_passed_over(line: str) -> None:
    assert parse_crypto(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64!",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(bytes(29)).decode()}",
        f"1 AEAD_AES_256_GCM inline:{B64}",  # 30 bytes where GCM-256 needs 44
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|lifetime",
    ],
)
def test_a_malformed_key_is_refused_without_showing_it(line: str) -> None:
    with pytest.raises(BadCrypto) as caught:
        parse_crypto(line)
    assert line.split("inline:")[1][:20] not in str(caught.value)
    # In an offer: 488
    with pytest.raises(NotAcceptable, match="a=crypto"):
        plan_media(parse_sdp(offer("RTP/SAVP", line)), ["PCMU"], OVER_UDP)


# --- negotiation ------------------------------------------------------------------------------


def test_our_suite_preference_wins_and_the_answer_carries_our_key() -> None:
    gcm = base64.b64encode(os.urandom(28)).decode()
    sdp = parse_sdp(
        offer(
            "RTP/SAVP",
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}",
            f"2 AEAD_AES_128_GCM inline:{gcm}",
        )
    )
    policy = SrtpPolicy(suites=("AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"), allow_insecure=True)
    session = SdpSession(["PCMU"], "192.0.2.1", 10002, srtp=policy)
    plan, answer = session.answer(sdp)
    assert plan.remote_crypto is not None and plan.local_crypto is not None
    assert (plan.remote_crypto.tag, plan.remote_crypto.suite) == (2, "AEAD_AES_128_GCM")
    assert plan.local_crypto.key != plan.remote_crypto.key and len(plan.local_crypto.key) == 28
    text = serialize_sdp(answer)
    assert "m=audio 10002 RTP/SAVP 0 101\r\n" in text
    assert f"a=crypto:{plan.local_crypto.value()}\r\n" in text
    assert text.count("a=crypto") == 1 and gcm not in text


def test_a_plain_offer_gets_plain_rtp_in_optional_mode() -> None:
    plan, answer = SdpSession(["PCMU"], "192.0.2.1", 10002, srtp=OVER_TLS).answer(
        parse_sdp(offer("RTP/AVP"))
    )
    assert plan.remote_crypto is None and srtp_session(plan) is None
    assert "RTP/AVP" in serialize_sdp(answer) and "crypto" not in serialize_sdp(answer)


@pytest.mark.parametrize(
    ("body", "policy", "reason"),
    [
        (offer("RTP/AVP"), SrtpPolicy(mode="required", secure_signalling=True), "required"),
        (offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}"), SrtpPolicy(),
         "unencrypted signalling"),
        (offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}"),
         SrtpPolicy(mode="off", secure_signalling=True), "media.srtp is off"),
        (offer("RTP/SAVP", f"1 F8_128_HMAC_SHA1_80 inline:{B64}"), OVER_TLS,
         r"no common SRTP crypto suite: offered \['F8_128_HMAC_SHA1_80'\]"),
        (offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_32 inline:{B64}"),
         SrtpPolicy(suites=("AES_CM_128_HMAC_SHA1_80",), secure_signalling=True),
         "no common SRTP crypto suite"),
        (offer("RTP/SAVP"), OVER_TLS, "no common SRTP crypto suite"),
    ],
)  # fmt: skip
def test_offers_we_cannot_take_get_488(body: str, policy: SrtpPolicy, reason: str) -> None:
    with pytest.raises(NotAcceptable, match=reason) as caught:
        plan_media(parse_sdp(body), ["PCMU"], policy)
    assert B64 not in str(caught.value)


def test_a_reinvite_with_the_same_key_keeps_the_session_and_a_new_key_rekeys() -> None:
    session = SdpSession(["PCMU"], "192.0.2.1", 10002, srtp=OVER_TLS)
    first, answer1 = session.answer(
        parse_sdp(offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}"))
    )
    again, answer2 = session.answer(
        parse_sdp(offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}"))
    )
    assert again.local_crypto == first.local_crypto  # a session refresh changes nothing
    assert answer2.origin.session_version == answer1.origin.session_version
    new_key = base64.b64encode(os.urandom(30)).decode()
    rekeyed, _ = session.answer(
        parse_sdp(offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{new_key}"))
    )
    assert rekeyed.remote_crypto is not None and rekeyed.local_crypto is not None
    assert rekeyed.remote_crypto.key != KEY30 and rekeyed.local_crypto != first.local_crypto
    # Turning SRTP off within the call (a downgrade) is refused; the call keeps its keys.
    with pytest.raises(NotAcceptable, match="cannot turn SRTP on or off"):
        session.answer(parse_sdp(offer("RTP/AVP")))
    assert session.plan == rekeyed


def test_required_mode_offers_srtp_and_takes_the_answer_it_picked() -> None:
    policy = SrtpPolicy(mode="required", secure_signalling=True)
    session = SdpSession(["PCMU"], "192.0.2.1", 10002, srtp=policy)
    ours = serialize_sdp(session.offer())
    assert "RTP/SAVP" in ours and ours.count("a=crypto:") == 2
    assert serialize_sdp(session.offer()) == ours  # the same offer each time
    mine = parse_crypto(ours.split("a=crypto:")[2].split("\r\n")[0])
    assert mine is not None
    answer = offer("RTP/SAVP", f"{mine.tag} {mine.suite} inline:{B64}")
    plan = session.accept_answer(parse_sdp(answer))
    assert plan.local_crypto == mine and plan.remote_crypto is not None
    # Over UDP without srtp_over_insecure_signalling there is no offer to make.
    with pytest.raises(NotAcceptable, match="unencrypted"):
        SdpSession(["PCMU"], "192.0.2.1", 10002, srtp=SrtpPolicy(mode="required")).offer()


# --- protect / unprotect ----------------------------------------------------------------------


def pair(suite: str) -> tuple[SrtpSession, SrtpSession]:
    """Two ends of a call: each one's local key is the other's remote."""
    a, b = CryptoAttribute.generate(1, suite), CryptoAttribute.generate(1, suite)
    return SrtpSession(a, b), SrtpSession(b, a)


@pytest.mark.parametrize("suite", list(SUITES))
def test_protect_unprotect_round_trip(suite: str) -> None:
    assert suite in available_suites()  # pylibsrtp's wheels have OpenSSL: GCM too
    caller, gateway = pair(suite)
    sender = RtpSender(0, 160)
    for _ in range(3):
        packet = bytes(sender.build(b"\x55" * 160))
        protected = caller.protect(packet)
        assert protected[:12] == packet[:12] and protected[12:172] != packet[12:]
        assert gateway.unprotect(protected) == packet
    with pytest.raises(SrtpDropped) as replay:
        gateway.unprotect(protected)
    assert replay.value.kind == "replay"
    forged = bytearray(caller.protect(bytes(sender.build(b"\x55" * 160))))
    forged[-1] ^= 1
    with pytest.raises(SrtpDropped) as bad:
        gateway.unprotect(bytes(forged))
    assert bad.value.kind == "auth"
    rtcp = bytes([0x80, 201, 0, 1]) + (1234).to_bytes(4, "big")  # an empty receiver report
    assert gateway.unprotect_rtcp(caller.protect_rtcp(rtcp)) == rtcp


async def test_the_stream_drops_and_counts_forged_and_replayed_packets() -> None:
    caller, ours = pair("AES_CM_128_HMAC_SHA1_80")
    heard: list[bytes] = []
    stream = RtpStream(PCMU, 0, PEER, heard.append, srtp=ours)
    sender = RtpSender(0, 160)
    packets = [caller.protect(bytes(sender.build(bytes([i]) * 160))) for i in range(6)]
    forged = bytearray(packets[3])
    forged[20] ^= 0xFF  # a flipped payload byte: the tag no longer matches
    for data in [packets[0], packets[1], packets[1], bytes(forged), packets[2], packets[0]]:
        stream.datagram_received(data, PEER)
    assert heard == [bytes([0]) * 160, bytes([1]) * 160, bytes([2]) * 160]
    s = stream.stats
    assert (s.packets_in, s.srtp_replayed, s.srtp_auth_failures) == (3, 2, 1)
    # SRTCP on the RTP port (rtcp-mux) is authenticated, then dropped: we use no RTCP.
    stream.datagram_received(caller.protect_rtcp(bytes([0x80, 201, 0, 1, 0, 0, 4, 210])), PEER)
    assert s.rtcp_dropped == 1 and len(heard) == 3
    # Forged packets from elsewhere never teach the stream a new source (strict RTP learning).
    stranger = ("192.0.2.99", 5000)
    plain = RtpSender(0, 160)
    for _ in range(10):
        stream.datagram_received(bytes(plain.build(b"\x00" * 160)) + bytes(10), stranger)
    assert stream.remote == PEER and s.sources_learned == 0 and s.srtp_auth_failures == 11


async def test_the_stream_protects_what_it_sends() -> None:
    caller, ours = pair("AEAD_AES_256_GCM")
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    stream = RtpStream(PCMU, 0, rx.getsockname(), lambda _: None, srtp=ours)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    stream.attach(tx)
    try:
        stream.send(b"\x42" * 160, marker=True)
        data = await asyncio.get_running_loop().run_in_executor(None, rx.recv, 2048)
    finally:
        stream.close()
        rx.close()
    assert len(data) == 12 + 160 + 16 and b"\x42" * 16 not in data
    clear = caller.unprotect(data)
    assert clear[12:] == b"\x42" * 160 and clear[1] == 0x80  # marker, PT 0


async def test_the_call_leg_keeps_the_sessions_for_the_same_key_and_renews_them_on_a_new_one() -> (
    None
):
    """A refresh, or the same key under another tag, keeps the SRTP sessions (a new one
    would open a fresh replay window to packets already heard); a new key renews them."""
    session = SdpSession(["PCMU"], "192.0.2.1", 10002, srtp=OVER_TLS)
    plan, _ = session.answer(
        parse_sdp(offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}"))
    )
    stream = RtpStream(PCMU, 0, PEER, lambda _: None, srtp=srtp_session(plan))
    leg = CallLeg(None, session, stream, structlog.get_logger())  # type: ignore[arg-type]
    first = stream.srtp
    for tag in (1, 7):
        previous = session.plan
        again, answer = session.answer(
            parse_sdp(offer("RTP/SAVP", f"{tag} AES_CM_128_HMAC_SHA1_80 inline:{B64}"))
        )
        leg.apply(again, previous)
        assert stream.srtp is first
    assert again.local_crypto is not None and again.local_crypto.tag == 7
    assert "a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:" in serialize_sdp(answer)
    assert again.local_crypto.key == plan.local_crypto.key  # type: ignore[union-attr]
    previous = session.plan
    new_key = base64.b64encode(os.urandom(30)).decode()
    rekeyed, _ = session.answer(
        parse_sdp(offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{new_key}"))
    )
    leg.apply(rekeyed, previous)
    assert stream.srtp is not first and stream.srtp is not None
    assert stream.srtp.remote.key == base64.b64decode(new_key)


async def test_a_nat_source_is_learned_from_authentic_packets_only() -> None:
    caller, ours = pair("AES_CM_128_HMAC_SHA1_80")
    heard: list[bytes] = []
    stream = RtpStream(PCMU, 0, PEER, heard.append, srtp=ours, learn_packets=4)
    nat = ("198.51.100.7", 31000)
    sender = RtpSender(0, 160)
    for _ in range(4):
        stream.datagram_received(caller.protect(sender.build(b"\x11" * 160)), nat)
    assert stream.remote == nat and stream.stats.sources_learned == 1
    stream.datagram_received(caller.protect(sender.build(b"\x22" * 160)), nat)
    assert heard[-1] == b"\x22" * 160 and stream.stats.srtp_auth_failures == 0


def test_a_peer_cycling_ssrcs_keeps_a_bounded_number_of_libsrtp_streams() -> None:
    caller, gateway = pair("AES_CM_128_HMAC_SHA1_80")
    first = RtpSender(0, 160, ssrc=1)
    old = [caller.protect(first.build(b"\x01" * 160)) for _ in range(2)]
    gateway.unprotect(old[0])
    for ssrc in range(2, 2 + 50):
        gateway.unprotect(caller.protect(RtpSender(0, 160, ssrc=ssrc).build(b"\x02" * 160)))
    assert len(gateway._ssrcs) == 8 and 1 not in gateway._ssrcs
    # The first SSRC's stream was removed: it starts again (a new stream from the template).
    assert gateway.unprotect(old[1])[12:] == b"\x01" * 160


async def test_an_offerless_reinvite_keeps_our_key_and_outbound_session() -> None:
    """Our offer in a call is the key in force; when the peer answers with a new key of its
    own, only the inbound session is new: a new outbound session under our same key would
    start its packet index again and reuse keystream."""
    session = SdpSession(["PCMU"], "192.0.2.1", 10002, srtp=OVER_TLS)
    plan, _ = session.answer(
        parse_sdp(offer("RTP/SAVP", f"3 AES_CM_128_HMAC_SHA1_80 inline:{B64}"))
    )
    assert plan.local_crypto is not None
    stream = RtpStream(PCMU, 0, PEER, lambda _: None, srtp=srtp_session(plan))
    srtp = stream.srtp
    assert srtp is not None
    tx = srtp._tx
    leg = CallLeg(None, session, stream, structlog.get_logger())  # type: ignore[arg-type]
    ours = serialize_sdp(session.offer())
    assert "RTP/SAVP" in ours and f"a=crypto:{plan.local_crypto.value()}\r\n" in ours
    new_key = CryptoAttribute.generate(3, "AES_CM_128_HMAC_SHA1_80")
    previous = session.plan
    answered = session.accept_answer(parse_sdp(offer("RTP/SAVP", new_key.value())))
    leg.apply(answered, previous)
    assert stream.srtp is srtp and srtp._tx is tx and srtp.remote == new_key
    caller = SrtpSession(new_key, plan.local_crypto)
    packet = bytes(RtpSender(0, 160).build(b"\x33" * 160))
    assert srtp.unprotect(caller.protect(packet)) == packet


_PIECES = st.sampled_from(
    ["1", "0", "999999999", "1234567890", " ", "  ", "AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM",
     "inline:", "INLINE:", B64, B64[:-2], "==", "|", "2^20", "2^99", "1:4", ";", "\t", "\x00",
     "é", "UNENCRYPTED_SRTP", "KDR=1"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=8), max_size=12).map("".join))
def test_any_crypto_value_parses_or_is_refused_precisely(value: str) -> None:
    """Nothing but None, an attribute of a suite we run, or BadCrypto (a 488)."""
    try:
        attr = parse_crypto(value)
    except BadCrypto as exc:
        assert B64 not in str(exc)
        return
    if attr is not None:
        assert len(attr.key) == SUITES[attr.suite].key_len
        SrtpSession(attr, attr)  # libsrtp takes the key
