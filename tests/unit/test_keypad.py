"""Key presses are gathered into one entry: on #, after a pause, or one by one."""

from gateway.bridge.keypad import Keypad, dtmf_message


def test_hash_completes_an_entry_at_once() -> None:
    pad = Keypad(1500)
    assert [pad.press(d, t) for d, t in (("1", 0.0), ("2", 0.5), ("3", 1.0))] == [None] * 3
    assert pad.press("#", 1.2) == "123#"
    assert pad.deadline is None and pad.due(10.0) is None


def test_a_pause_completes_an_entry() -> None:
    pad = Keypad(1500)
    pad.press("4", 0.0)
    pad.press("2", 1.0)
    assert pad.deadline == 2.5
    assert pad.due(2.4) is None
    assert pad.due(2.5) == "42"
    assert pad.due(9.0) is None


def test_no_gathering_sends_each_key() -> None:
    pad = Keypad(0)
    assert pad.press("5", 0.0) == "5"
    assert pad.press("*", 0.1) == "*"


def test_message_text() -> None:
    assert dtmf_message("5") == "[DTMF 5]"


def test_info_bodies() -> None:
    from gateway.sip.messages import info_digit

    relay = "application/dtmf-relay"
    assert info_digit("Signal=5\r\nDuration=160\r\n", relay) == "5"
    assert info_digit("Signal= #\r\n", relay) == "#"
    assert info_digit("Signal=11\r\n", relay) == "#"
    assert info_digit("Duration=160\r\n", relay) is None
    assert info_digit("*", "application/dtmf") == "*"
    assert info_digit("12", "application/dtmf") is None
    assert info_digit("\x00\xff", "application/dtmf") is None


def test_an_entry_never_grows_past_max_digits() -> None:
    """A caller who presses keys for ever without a pause: every entry stays bounded."""
    pad = Keypad(1500, max_digits=32)
    entries, now = [], 0.0
    for _ in range(5000):
        now += 0.1  # ten keys a second: within the rate, so none is dropped
        assert pad.accept(now)
        entry = pad.press("1", now)
        if entry is not None:
            entries.append(entry)
    assert entries and all(len(e) == 32 for e in entries)
    assert len(entries) == 5000 // 32 and pad.dropped == 0
    assert len(pad.take() or "") == 5000 % 32


def test_keys_faster_than_a_person_are_dropped() -> None:
    """Thousands of key events in one second (RTP or SIP INFO from a hostile peer): a burst
    of KEY_BURST gets through, then KEYS_PER_S a second, the rest is dropped."""
    from gateway.bridge.keypad import KEY_BURST, KEYS_PER_S

    pad = Keypad(0)
    accepted = sum(pad.accept(i / 5000) for i in range(5000))  # 5000 keys within 1 s
    assert KEY_BURST <= accepted <= KEY_BURST + KEYS_PER_S
    assert pad.dropped == 5000 - accepted
    # After a pause the bucket has refilled: a person's entry goes through whole.
    assert all(pad.accept(10.0 + i * 0.15) for i in range(16))
