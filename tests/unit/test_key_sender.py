"""Keys toward the caller as RFC 4733 packets: what each packet interval carries, as a table."""

import struct

import pytest

from gateway.media.key_sender import MAX_PENDING_KEYS, KeySender


def _run(sender: KeySender, ticks: int, start_ts: int = 1000) -> list[tuple | None]:
    """Each interval's packet as (event, end, volume, duration, marker, event timestamp)."""
    out: list[tuple | None] = []
    for i in range(ticks):
        packet = sender.next_packet(start_ts + i * 160)
        if packet is None:
            out.append(None)
            continue
        payload, marker, ts = packet
        event, flags, duration = struct.unpack("!BBH", payload)
        out.append((event, bool(flags & 0x80), flags & 0x3F, duration, marker, ts))
    return out


def test_one_key_is_five_updates_then_three_ends_on_its_start_timestamp() -> None:
    sender = KeySender(frame_samples=160, tone_ms=100, gap_ms=60)
    sender.queue("5")
    assert _run(sender, 9) == [
        (5, False, 10, 160, True, 1000),
        (5, False, 10, 320, False, 1000),
        (5, False, 10, 480, False, 1000),
        (5, False, 10, 640, False, 1000),
        (5, False, 10, 800, False, 1000),
        (5, True, 10, 800, False, 1000),
        (5, True, 10, 800, False, 1000),
        (5, True, 10, 800, False, 1000),
        None,
    ]
    assert sender.busy  # the gap after the key
    assert _run(sender, 3) == [None, None, None]
    assert not sender.busy


def test_two_equal_keys_are_two_events_apart_by_a_gap_of_audio() -> None:
    sender = KeySender(frame_samples=160, tone_ms=40, gap_ms=40)
    sender.queue("##")
    rows = _run(sender, 12)
    assert [r and (r[0], r[1], r[4], r[5]) for r in rows] == [
        (11, False, True, 1000),
        (11, False, False, 1000),
        (11, True, False, 1000),
        (11, True, False, 1000),
        (11, True, False, 1000),
        None,
        None,
        (11, False, True, 1000 + 7 * 160),
        (11, False, False, 1000 + 7 * 160),
        (11, True, False, 1000 + 7 * 160),
        (11, True, False, 1000 + 7 * 160),
        (11, True, False, 1000 + 7 * 160),
    ]


@pytest.mark.parametrize(("key", "code"), [("0", 0), ("9", 9), ("*", 10), ("#", 11), ("a", 12)])
def test_each_key_has_its_event_code(key: str, code: int) -> None:
    sender = KeySender(frame_samples=160)
    sender.queue(key)
    first = _run(sender, 1)[0]
    assert first is not None and first[0] == code


@pytest.mark.parametrize("keys", ["", "12x", "1\r\n", "flash"])
def test_anything_but_keys_is_refused_and_nothing_is_queued(keys: str) -> None:
    sender = KeySender(frame_samples=160)
    with pytest.raises(ValueError):
        sender.queue(keys)
    assert not sender.busy


def test_the_queue_is_bounded() -> None:
    sender = KeySender(frame_samples=160)
    sender.queue("1" * MAX_PENDING_KEYS)
    with pytest.raises(ValueError):
        sender.queue("2")


def test_a_30_ms_ptime_sends_whole_intervals_and_a_tone_of_at_least_the_asked_length() -> None:
    sender = KeySender(frame_samples=240, tone_ms=100)
    sender.queue("1")
    rows = [r for r in _run(sender, 10) if r is not None]
    assert [r[3] for r in rows] == [240, 480, 720, 960, 960, 960, 960]
