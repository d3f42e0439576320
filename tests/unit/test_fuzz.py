"""Property-based fuzzing (hypothesis) of what the gateway parses from strangers.

* SDP: aiosipua's ``parse_sdp`` and our offer/answer (``gateway/sip/sdp.py``): any text either
  fails to parse with the errors the SIP layer maps to 400, or gives a plan / NotAcceptable
  (488) and an answer that serialises. (The SIP message path is fuzzed in test_sip_parse.py.)
* RTP: ``parse_rtp``, the reorder buffer, the audio clock, the DTMF decoder, and the whole
  receive path of ``RtpStream.datagram_received``: no input raises, sequence order holds.
* Realtime: ``parse`` of both dialects: any frame is an event or a ProtocolError.

CI runs a bounded number of examples per property; a longer run on demand:

    FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/unit/test_fuzz.py
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import struct

from aiosipua import parse_sdp, serialize_sdp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.media.dtmf import DtmfDecoder
from gateway.media.g711 import PCMU
from gateway.media.jitter import MAX_HELD, AudioClock, ReorderBuffer
from gateway.media.rtp import RtpPacket, RtpParseError, parse_rtp
from gateway.media.stream import RtpStream
from gateway.realtime import protocol as rt
from gateway.sip.sdp import NotAcceptable, SdpSession

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- SDP ----------------------------------------------------------------------------------------

OFFER_LINES = [
    "v=0",
    "o=- 53655765 2353687637 IN IP4 192.0.2.10",
    "s=-",
    "c=IN IP4 192.0.2.10",
    "t=0 0",
    "m=audio 40000 RTP/AVP 0 8 18 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:18 G729/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
]
SDP_PIECES = st.sampled_from(
    [
        *OFFER_LINES,
        "m=audio 0 RTP/AVP 0",
        "m=audio 99999999999 RTP/AVP 0",
        "m=audio 4000 RTP/SAVP 0",
        "m=video 5000 RTP/AVP 96",
        "m=audio -1 RTP/AVP",
        "c=IN IP4 0.0.0.0",
        "c=IN IP6 ::1",
        "c=IN IP4",
        "c=",
        "a=rtpmap:0",
        "a=rtpmap:x PCMU/8000",
        "a=rtpmap:96 PCMU/16000",
        "a=rtpmap:97 pcmu/abc",
        "a=ptime:",
        "a=ptime:-5",
        "a=ptime:1e9",
        "a=sendonly",
        "a=inactive",
        "a=recvonly",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "o=",
        "t=",
        "",
        "=",
        "m=",
        "m=audio",
        "m=audio 4000",
    ]
)
MUTATED_SDP = st.lists(st.one_of(SDP_PIECES, st.text(max_size=40)), min_size=0, max_size=20).map(
    "\r\n".join
)


def _plan_and_answer(text: str) -> None:
    """The path of an INVITE's body, then of a re-INVITE's and of an ACK's answer."""
    try:
        offer = parse_sdp(text)
    except (ValueError, IndexError):
        return  # the SIP layer answers 400 Malformed SDP (gateway/sip/messages.py)
    session = SdpSession(["PCMU", "PCMA"], "127.0.0.1", rtp_port=10000)
    try:
        plan = session.first_plan(offer)
        plan, answer = session.answer(offer)
    except NotAcceptable:
        return  # 488
    assert plan.codec.name in ("PCMU", "PCMA")
    assert plan.ptime_ms in (10, 20, 30, 40)
    assert 0 <= plan.payload_type <= 127
    serialize_sdp(answer)
    # The same offer again (a session refresh), then our own offer and its answer (late offer).
    try:
        session.answer(offer)
    except NotAcceptable:
        pass
    session.offer()
    try:
        session.accept_answer(offer)
    except NotAcceptable:
        pass


@FUZZ
@given(st.text(max_size=600))
def test_any_text_as_sdp(text: str) -> None:
    _plan_and_answer(text)


@FUZZ
@given(MUTATED_SDP)
def test_mutated_offers(text: str) -> None:
    _plan_and_answer(text)


def test_the_unmutated_offer_is_answered() -> None:
    """The corpus itself is a good offer: the property above reaches the answer path."""
    session = SdpSession(["PCMU", "PCMA"], "127.0.0.1", rtp_port=10000)
    plan, answer = session.answer(parse_sdp("\r\n".join(OFFER_LINES) + "\r\n"))
    assert plan.codec.name == "PCMU" and plan.dtmf_payload_type == 101
    assert "m=audio 10000 RTP/AVP 0 101" in serialize_sdp(answer)


# --- RTP ----------------------------------------------------------------------------------------


def rtp_bytes(
    version: int = 2,
    padding: bool = False,
    extension: bool = False,
    csrc_count: int = 0,
    marker: bool = False,
    payload_type: int = 0,
    sequence: int = 0,
    timestamp: int = 0,
    ssrc: int = 1,
    tail: bytes = b"",
) -> bytes:
    first = (version << 6) | (padding << 5) | (extension << 4) | csrc_count
    second = (marker << 7) | payload_type
    return struct.pack("!BBHII", first, second, sequence, timestamp, ssrc) + tail


RTP_HEADERS = st.builds(
    rtp_bytes,
    version=st.integers(0, 3),
    padding=st.booleans(),
    extension=st.booleans(),
    csrc_count=st.integers(0, 15),
    marker=st.booleans(),
    payload_type=st.sampled_from([0, 8, 13, 101, 18, 127]),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    tail=st.binary(max_size=300),
)
DATAGRAMS = st.one_of(st.binary(max_size=400), RTP_HEADERS)


@FUZZ
@given(DATAGRAMS)
def test_parse_rtp_raises_only_rtp_parse_error(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpParseError:
        return
    assert 0 <= packet.payload_type <= 127
    assert len(packet.payload) <= len(data) - 12


def packet(sequence: int, ssrc: int = 7, timestamp: int | None = None, pt: int = 0) -> RtpPacket:
    ts = sequence * 160 if timestamp is None else timestamp
    return RtpPacket(pt, sequence & 0xFFFF, ts & 0xFFFFFFFF, ssrc, False, memoryview(b"\xff" * 160))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(-200, 5000),  # sequence offset from a start near the wrap
            st.sampled_from([7, 7, 7, 7, 9]),  # mostly one source, sometimes another
            st.floats(0, 0.2),  # time since the previous packet
        ),
        max_size=200,
    ),
    st.integers(0, 0xFFFF),
)
def test_reorder_buffer_keeps_order_and_bounds(
    arrivals: list[tuple[int, int, float]], start: int
) -> None:
    buffer = ReorderBuffer(0.06)
    clock = AudioClock()
    now = 0.0
    out: list[RtpPacket] = []
    for offset, ssrc, dt in arrivals:
        now += dt
        ready = buffer.push(packet(start + offset, ssrc), now)
        ready += buffer.poll(now + 0.07)
        for p in ready:
            assert 0 <= clock.gap(p.timestamp, len(p.payload)) <= clock.max_fill
        out += ready
        assert len(buffer._held) <= MAX_HELD
    stats = buffer.stats
    assert stats.delivered == len(out) <= stats.received == len(arrivals)
    # No packet comes out twice in a row (a duplicate held and delivered again).
    for a, b in itertools.pairwise(out):
        if a.ssrc == b.ssrc:
            assert ((b.sequence - a.sequence) & 0xFFFF) != 0


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, 255),  # event
            st.integers(0, 255),  # flags (end bit, volume)
            st.integers(0, 0xFFFF),  # duration
            st.sampled_from([0, 0, 800, 1600, 0xFFFFFF00]),  # timestamp
            st.binary(max_size=6),  # extra or short payload
        ),
        max_size=60,
    )
)
def test_dtmf_decoder_never_raises(events: list[tuple[int, int, int, int, bytes]]) -> None:
    decoder = DtmfDecoder()
    reported = 0
    for event, flags, duration, ts, extra in events:
        payload = (
            struct.pack("!BBH", event, flags, duration)[: len(extra) % 5]
            if extra
            else (struct.pack("!BBH", event, flags, duration))
        )
        pkt = RtpPacket(101, 0, ts, 1, False, memoryview(payload))
        reported += len(decoder.push(pkt))
        reported += len(decoder.audio(ts + 4000))
    assert reported <= len(events)


@FUZZ
@given(st.lists(DATAGRAMS, max_size=80), st.booleans())
def test_rtp_receive_path_never_raises(datagrams: list[bytes], foreign: bool) -> None:
    """Whatever arrives on a call's RTP socket: source checks, flood guard, parse, reorder,
    payload dispatch, DTMF; every datagram is counted once and the bridge gets bytes. That what
    it gets is the audio alone is checked by the next test, on packets whose audio is known.
    Port 4000 is the SDP's address (heard at once), 4001 a stranger."""
    payloads: list[bytes] = []
    stream = RtpStream(PCMU, 0, ("127.0.0.1", 4000), payloads.append, 20, dtmf_payload_type=101)

    async def feed() -> None:
        for i, data in enumerate(datagrams):
            source = ("127.0.0.1", 4000 + (i % 2 if foreign else 0))
            stream.datagram_received(data, source)
        stream.close()

    asyncio.run(feed())
    s = stream.stats
    assert s.packets_in + s.malformed + s.foreign_source + s.flood_dropped == len(datagrams)
    assert all(isinstance(p, bytes) for p in payloads)


DRESSINGS = st.tuples(
    st.integers(0, 15),  # CSRC count
    st.one_of(st.none(), st.integers(0, 3)),  # header extension of that many words
    st.integers(0, 40),  # padding octets
)


@FUZZ
@given(st.lists(DRESSINGS, min_size=1, max_size=20))
def test_the_bridge_gets_the_payload_without_what_the_header_carries(
    dressings: list[tuple[int, int | None, int]],
) -> None:
    """In-sequence PCMU from the caller, each packet's header dressed with CSRCs, an extension
    or padding: what reaches the bridge is each packet's audio, byte for byte, in order
    (a plain first packet puts the stream on its fast path)."""
    payloads: list[bytes] = []
    stream = RtpStream(PCMU, 0, ("127.0.0.1", 4000), payloads.append, 20)
    audio = [bytes([n]) * 160 for n in range(1 + len(dressings))]
    packets = [struct.pack("!BBHII", 0x80, 0, 0, 0, 7) + audio[0]]
    for n, (count, words, padding) in enumerate(dressings, start=1):
        first = 0x80 | (0x20 if padding else 0) | (0x10 if words is not None else 0) | count
        head = struct.pack("!BBHII", first, 0, n, n * 160, 7) + b"\xcc" * (4 * count)
        if words is not None:
            head += struct.pack("!HH", 0xBEDE, words) + b"\xee" * (4 * words)
        tail = b"\xaa" * (padding - 1) + bytes([padding]) if padding else b""
        packets.append(head + audio[n] + tail)

    async def feed() -> None:
        for data in packets:
            stream.datagram_received(data, ("127.0.0.1", 4000))
        stream.close()

    asyncio.run(feed())
    assert payloads == audio


# --- Realtime events ----------------------------------------------------------------------------

EVENT_TYPES = [
    "session.created",
    "session.updated",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "response.created",
    "response.output_audio.delta",
    "response.audio.delta",
    "response.output_audio.done",
    "response.audio.done",
    "response.output_audio_transcript.delta",
    "response.audio_transcript.done",
    "conversation.item.input_audio_transcription.completed",
    "response.done",
    "conversation.item.truncated",
    "error",
    "response.function_call_arguments.done",
    "rate_limits.updated",
]
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "response_id", "item_id", "content_index", "delta", "audio_start_ms", "audio_end_ms",
    "response", "session", "error", "transcript", "call_id", "name", "arguments",
]  # fmt: skip
FIELD_VALUES = st.one_of(
    JSON_VALUES,
    st.just(base64.b64encode(b"\x00\x01" * 80).decode()),
    st.just({"id": "resp_1", "status": "completed", "status_details": None, "usage": {}}),
    st.just({"id": "resp_1", "status_details": "oops", "usage": []}),
)
EVENTS = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(EVENT_TYPES),
    st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUES, max_size=8),
)
DIALECTS = [rt.GaDialect(), rt.PreviewDialect("2025-04-01-preview")]


def _parses_or_refuses(text: str | bytes) -> None:
    for dialect in DIALECTS:
        try:
            event = dialect.parse(text)
        except rt.ProtocolError:
            continue
        assert event is not None


@FUZZ
@given(EVENTS)
def test_realtime_events_with_any_field_values(event: dict) -> None:
    _parses_or_refuses(json.dumps(event))


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), JSON_VALUES.map(json.dumps)))
def test_realtime_frames_of_any_shape(frame: str | bytes) -> None:
    _parses_or_refuses(frame)


def test_regression_a_response_that_is_not_an_object() -> None:
    """Found by the properties above: `response.done` whose `response` is a string raised
    AttributeError (not a ProtocolError), which ended the whole call."""
    for dialect in DIALECTS:
        for text in (
            '{"type": "response.done", "response": "x"}',
            '{"type": "response.done", "response": {"status_details": "x"}}',
            '{"type": "error", "error": "x"}',
        ):
            try:
                dialect.parse(text)
            except rt.ProtocolError:
                pass
