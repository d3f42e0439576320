"""RtpReceiver's short path (the packet of nearly every call) keeps the books the general path
keeps: the source's last word for the strict-RTP guard, the packet count; and the defaults a
call that names none gets (mu-law silence in a gap)."""

from __future__ import annotations

from gateway.media.receiver import Drop, RtpReceiver
from tests.unit.test_rtp_receiver import NAT, PT, SDP, au, feed, fill, from_, pkt, receiver


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
