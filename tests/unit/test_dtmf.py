"""RFC 4733 key presses from hand-built telephone-event packets."""

from __future__ import annotations

import struct

from gateway.media.dtmf import DtmfDecoder, DtmfEvent
from gateway.media.rtp import RtpPacket


def event(
    code: int, duration: int, *, end: bool = False, ts: int = 8000, seq: int = 0
) -> RtpPacket:
    payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)
    return RtpPacket(101, seq, ts, 0x42, False, payload)


def key_press(code: int, ts: int, samples: int = 800, ends: int = 3) -> list[RtpPacket]:
    """What a phone sends (RFC 4733 §2.5.1): updates every 50 ms, then the end three times."""
    packets = [event(code, d, ts=ts) for d in range(400, samples + 1, 400)]
    return packets + [event(code, samples, end=True, ts=ts) for _ in range(ends)]


def decode(decoder: DtmfDecoder, packets: list[RtpPacket]) -> list[DtmfEvent]:
    return [e for p in packets for e in decoder.push(p)]


def test_one_digit_per_key_press_despite_three_end_packets() -> None:
    dec = DtmfDecoder()
    assert decode(dec, key_press(5, ts=8000, samples=1600)) == [DtmfEvent("5", 200)]
    assert not dec.pending


def test_a_sequence_of_keys_including_star_hash_and_letters() -> None:
    dec = DtmfDecoder()
    packets = []
    for i, code in enumerate([1, 10, 11, 0, 12, 15, 16]):
        packets += key_press(code, ts=8000 * (i + 1))
    assert [e.digit for e in decode(dec, packets)] == ["1", "*", "#", "0", "A", "D", "flash"]


def test_the_same_key_twice_is_two_presses() -> None:
    dec = DtmfDecoder()
    digits = decode(dec, key_press(7, ts=1000) + key_press(7, ts=9000))
    assert [e.digit for e in digits] == ["7", "7"]


def test_lost_end_packets_report_the_digit_when_the_next_key_starts() -> None:
    dec = DtmfDecoder()
    assert decode(dec, key_press(3, ts=1000, samples=1200, ends=0)) == []
    assert dec.pending
    got = decode(dec, key_press(4, ts=9000))
    assert got == [DtmfEvent("3", 150, end_seen=False), DtmfEvent("4", 100)]


def test_lost_end_packets_report_the_digit_once_audio_has_moved_on() -> None:
    dec = DtmfDecoder()
    decode(dec, key_press(9, ts=1000, samples=800, ends=0))
    assert dec.audio(1000 + 800 + 160) == []  # audio alongside the key: still held
    assert dec.audio(1000 + 800 + 1600) == [DtmfEvent("9", 100, end_seen=False)]
    assert dec.audio(1000 + 800 + 3200) == []  # reported once


def test_timestamp_wrap_within_a_key_press() -> None:
    dec = DtmfDecoder()
    ts = 0xFFFFFFFF - 100
    decode(dec, key_press(2, ts=ts, ends=0))
    assert dec.audio((ts + 800 + 1600) & 0xFFFFFFFF) == [DtmfEvent("2", 100, end_seen=False)]


def test_short_and_unknown_events_are_dropped_safely() -> None:
    dec = DtmfDecoder()
    assert dec.push(RtpPacket(101, 0, 0, 1, False, b"\x05\x80")) == []
    assert dec.malformed == 1
    assert decode(dec, key_press(70, ts=5000)) == []  # a line event we never offered
    assert dec.unknown_events == 1
    assert [e.digit for e in decode(dec, key_press(8, ts=9000))] == ["8"]
