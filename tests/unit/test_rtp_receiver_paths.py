"""RtpReceiver's short path (the packet of nearly every call) keeps the books the general path
keeps: the source's last word for the strict-RTP guard, the packet count; and the defaults a
call that names none gets (mu-law silence in a gap)."""

from __future__ import annotations

from gateway.media.dtmf import DtmfEvent
from gateway.media.receiver import Drop, RtpReceiver, Signal, SourceChanged
from tests.unit.test_rtp_receiver import (
    CN_PT,
    NAT,
    PT,
    SDP,
    STRANGER,
    au,
    feed,
    fill,
    from_,
    key,
    pkt,
    receiver,
    srtp_pair,
)


def test_a_source_sending_on_the_short_path_is_never_quiet_enough_to_lose() -> None:
    """Two seconds of the SDP address's audio (all but the first on the short path), then a
    NAT address starts a valid run beside it: not learned, the caller is still talking."""
    rx = receiver(SDP)
    caller = from_(SDP, [pkt(s) for s in range(1, 101)])
    assert all(out == [au(s)] for s, out in zip(range(1, 101), feed(rx, caller), strict=True))
    intruder = from_(NAT, [pkt(s, ssrc=7) for s in range(1, 6)], start=2.0)
    assert feed(rx, intruder) == [[Drop.FOREIGN_SOURCE]] * 5


def test_every_packet_of_the_short_path_is_counted() -> None:
    rx = receiver(SDP)
    feed(rx, from_(SDP, [pkt(s) for s in range(1, 51)]))
    assert rx.stats.packets_in == 50


def test_without_a_silence_byte_a_gap_is_filled_with_mu_law_silence() -> None:
    rx = RtpReceiver(PT, SDP)
    out = feed(rx, [(pkt(1), SDP, 0.0), (pkt(2, au(2), ts=3 * 8), SDP, 0.04)])  # 8 samples lost
    assert out == [[au(1)], [fill(8), au(2)]]


def test_a_nat_source_is_learned_from_the_payload_type_it_sends() -> None:
    """A-law (PT 8) behind a NAT: the run counts by its payload type, not the marker bit."""
    rx = RtpReceiver(8, SDP, silence=0xD5)
    out = feed(rx, from_(NAT, [pkt(s, pt=8) for s in range(1, 5)]))
    assert out[:3] == [[Drop.FOREIGN_SOURCE]] * 3
    assert out[3] == [SourceChanged(NAT, True), au(4)]


def test_a_nat_source_with_header_extensions_is_learned_too() -> None:
    """Packets that are not a plain header (an extension) are read by the full parser."""
    rx = receiver(SDP)
    ext = b"\x10\x00\x00\x00"
    out = feed(rx, from_(NAT, [pkt(s, extension=ext) for s in range(1, 5)]))
    assert out[3] == [SourceChanged(NAT, True), au(4)]


def test_junk_with_an_rtp_like_second_byte_teaches_no_source() -> None:
    """Version 0 in the first byte: not RTP, whatever the second byte looks like."""
    rx = receiver(SDP)
    junk = [bytes([0x00, 0x80]) + s.to_bytes(2, "big") + bytes(20) for s in range(1, 7)]
    assert feed(rx, from_(NAT, junk)) == [[Drop.FOREIGN_SOURCE]] * 6


def test_the_flood_bucket_refills_with_time_for_a_packet_that_moves_the_source() -> None:
    rx = RtpReceiver(PT, None, strict=False)
    assert feed(rx, [(pkt(1), NAT, 5.0)]) == [[SourceChanged(NAT, True), au(1)]]
    rx.moved(None)  # a re-INVITE without an address: anyone may latch again
    rx.flood_tokens = 0.0
    out = feed(rx, [(pkt(2), STRANGER, 5.0)])  # no time passed: no token
    assert out == [[SourceChanged(STRANGER, True), Drop.FLOOD, Signal.FLOOD_STARTED]]
    assert feed(rx, [(pkt(2), STRANGER, 5.5)]) == [[au(2)]]  # the bucket refills from there
    rx.moved(None)
    rx.flood_tokens = 0.0
    out = feed(rx, [(pkt(4), NAT, 6.5)])  # a second later: refilled
    assert out[0][0] == SourceChanged(NAT, True) and Drop.FLOOD not in out[0]


def test_the_run_a_source_must_send_is_the_receivers_setting() -> None:
    rx = receiver(SDP, learn_packets=2)
    out = feed(rx, from_(NAT, [pkt(s) for s in range(1, 3)]))
    assert out == [[Drop.FOREIGN_SOURCE], [SourceChanged(NAT, True), au(2)]]


def test_the_general_path_counts_every_packet_and_every_malformed_one() -> None:
    rx = receiver(SDP)
    ext = b"\x10\x00\x00\x00"
    feed(rx, from_(SDP, [pkt(s, extension=ext) for s in range(1, 11)]))
    assert rx.stats.packets_in == 10
    feed(rx, from_(SDP, [b"\x80\x00", b"\x00" * 20], start=1.0))
    assert rx.stats.malformed == 2


def test_a_packet_that_moves_the_source_takes_exactly_one_token() -> None:
    rx = RtpReceiver(PT, None, strict=False)
    feed(rx, [(pkt(1), NAT, 5.0)])
    rx.moved(None)
    rx.flood_tokens = 1.0  # the last token
    out = feed(rx, [(pkt(2), STRANGER, 5.0)])
    assert out == [[SourceChanged(STRANGER, True), au(2)]]
    assert rx.flood_tokens == 0.0
    assert rx.silent_for(6.0) == 1.0  # the RTP timeout counts from it


def test_a_key_whose_end_was_lost_is_given_by_audio_on_the_general_path_too() -> None:
    """The same case as test_rtp_receiver's "every end packet lost", but the audio after the
    key press carries a header extension, so the general path must close the digit."""
    rx = receiver(SDP)
    ext = b"\x10\x00\x00\x00"
    steps = [pkt(1), key(2, 11, 400), key(3, 11, 400), pkt(4, ts=16 + 400 + 1600, extension=ext)]
    out = feed(rx, from_(SDP, steps))
    assert out == [[au(1)], [], [], [fill(2000), DtmfEvent("#", 50, end_seen=False), au(4)]]
    assert rx.stats.dtmf_events == 1


def test_comfort_noise_and_other_payloads_are_each_counted() -> None:
    rx = receiver(SDP)
    packets = [pkt(1), pkt(2, pt=CN_PT), pkt(3, pt=CN_PT), pkt(4, pt=96), pkt(5, pt=96)]
    out = feed(rx, from_(SDP, packets))
    assert out[1:] == [[Drop.COMFORT_NOISE]] * 2 + [[Drop.OTHER_PAYLOAD]] * 2
    assert (rx.stats.comfort_noise, rx.stats.other_payload) == (2, 2)


def test_a_resume_without_a_hold_does_not_restart_the_timeout() -> None:
    rx = receiver(SDP)
    feed(rx, [(pkt(1), SDP, 10.0)])
    assert rx.hold(False, 50.0) is False
    assert rx.silent_for(60.0) == 50.0


def test_the_summary_gives_whole_milliseconds_filled() -> None:
    rx = receiver(SDP)
    feed(rx, [(pkt(1), SDP, 0.0), (pkt(2, ts=8 + 8 + 12), SDP, 0.02)])  # 12 samples lost
    filled = rx.summary()["filled_ms"]
    assert filled == 1 and isinstance(filled, int)


def test_an_srtp_source_sending_is_never_quiet_enough_to_lose() -> None:
    """As for plain RTP: an authentic packet from the source keeps it alive, so a valid run
    from another address beside it is not learned."""
    caller, ours = srtp_pair()
    rx = receiver(SDP, srtp=ours)
    talk = from_(SDP, [caller.protect(pkt(s)) for s in range(1, 101)])
    assert feed(rx, talk)[-1] == [au(100)]
    other = from_(NAT, [caller.protect(pkt(s)) for s in range(101, 106)], start=2.0)
    assert feed(rx, other) == [[Drop.FOREIGN_SOURCE]] * 5
