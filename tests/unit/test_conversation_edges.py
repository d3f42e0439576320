"""cut_text at its edges, with the words it must give (not compared with itself), and the
conversation log's bounds: the turn limit, the replay's exact size limit, a transcript with
no turn begun before it, audio counted over several deltas."""

from __future__ import annotations

import pytest

from gateway.realtime import protocol as rt
from gateway.realtime.conversation import MAX_REPLAY_CHARS, MAX_TURNS, Conversation, cut_text

PCM16 = rt.bytes_per_ms("pcm16")


@pytest.mark.parametrize(
    ("text", "heard_ms", "audio_ms", "heard"),
    [
        ("one two three", 500, 1000, "one"),  # n = 6 is inside "two": back to "one"
        ("one two three", 1000, 1000, "one two three"),
        ("one two three ", 1000, 1000, "one two three "),  # heard in full: untouched
        ("one two three", 2000, 1000, "one two three"),
        ("one  two", 500, 1000, "one"),  # the cut on a space: spaces before it go
        ("abcdefghij", 999, 1000, "abcdefghij"),  # rounds to the end of the text
        ("a b", 0, 2, ""),  # nothing heard of a very short answer
        ("a b", -5, 2, ""),
        ("one two", 0, 1, ""),
        ("one two", 0, 0, "one two"),  # no audio figure: the text as it is
        ("one two", -5, 0, "one two"),  # never a division by zero
        ("one two", 10, -1, "one two"),
    ],
)
def test_cut_text_gives_the_words_heard(
    text: str, heard_ms: float, audio_ms: float, heard: str
) -> None:
    assert cut_text(text, heard_ms, audio_ms) == heard


def test_a_transcript_with_no_turn_before_it_takes_its_role_from_the_event() -> None:
    log = Conversation(PCM16)
    log.observe(rt.Transcript("caller", "u1", "Hello?"))
    log.observe(rt.Transcript("agent", "a1", "Hi."))
    assert log.replay() == [("user", "Hello?"), ("assistant", "Hi.")]


def test_audio_over_several_deltas_is_the_figure_a_cut_divides_by() -> None:
    log = Conversation(PCM16)
    for _ in range(2):
        log.observe(rt.AudioDelta("r1", "a1", 0, b"\x00" * 48 * 500))  # 2 x 500 ms
    log.observe(rt.Transcript("agent", "a1", "one two three"))
    log.cut("a1", 500)
    assert log.replay() == [("assistant", "one …")]


def test_the_log_keeps_the_latest_max_turns() -> None:
    log = Conversation(PCM16)
    for i in range(MAX_TURNS + 1):
        log.observe(rt.Transcript("caller", f"u{i}", f"t{i}"))
    assert len(log.turns) == MAX_TURNS
    assert next(iter(log.turns)) == "u1"


def test_turns_that_fill_the_replay_exactly_all_go() -> None:
    log = Conversation(PCM16)
    half = MAX_REPLAY_CHARS // 2
    for i in range(2):
        log.observe(rt.Transcript("caller", f"u{i}", str(i) * half))
    assert [text[0] for _, text in log.replay()] == ["0", "1"]
    log.observe(rt.Transcript("caller", "u2", "2"))
    assert [text[0] for _, text in log.replay()] == ["1", "2"]
