"""The conversation log that a new session is given: order, barge-in cuts, size limit."""

from __future__ import annotations

from gateway.realtime import protocol as rt
from gateway.realtime.conversation import MAX_REPLAY_CHARS, Conversation, cut_text

PCM16 = rt.bytes_per_ms("pcm16")


def test_turns_keep_the_order_they_began_in_not_the_order_transcripts_came() -> None:
    log = Conversation(PCM16)
    log.observe(rt.SpeechStarted(0, "u1"))
    log.observe(rt.AudioDelta("r1", "a1", 0, b"\x00" * 4800))
    log.observe(rt.Transcript("agent", "a1", "It is noon."))
    log.observe(rt.Transcript("caller", "u1", "What time is it?"))  # transcription came late
    log.observe(rt.Transcript("caller", "u2", "  "))  # nothing said: not replayed
    assert log.replay() == [("user", "What time is it?"), ("assistant", "It is noon.")]


def test_an_answer_cut_short_is_replayed_as_far_as_it_was_heard() -> None:
    log = Conversation(PCM16)
    log.observe(rt.AudioDelta("r1", "a1", 0, b"\x00" * 48 * 1000))  # 1 s of audio
    log.observe(rt.Transcript("agent", "a1", "one two three four five six seven eight nine ten"))
    log.cut("a1", 300)
    assert log.replay() == [("assistant", "one two three …")]
    log.cut("a1", 0)
    assert log.replay() == []
    log.cut("a1", 5000)
    assert log.replay() == [("assistant", "one two three four five six seven eight nine ten")]


def test_cut_before_the_transcript_still_applies() -> None:
    log = Conversation(PCM16)
    log.observe(rt.AudioDelta("r1", "a1", 0, b"\x00" * 48 * 1000))
    log.cut("a1", 500)
    log.observe(rt.Transcript("agent", "a1", "alpha beta gamma delta"))
    assert log.replay() == [("assistant", "alpha beta …")]


def test_replay_keeps_the_most_recent_turns_within_the_limit() -> None:
    log = Conversation(PCM16)
    line = "x" * 1000
    for i in range(20):
        log.observe(rt.Transcript("caller", f"u{i}", f"{i:02d}{line}"))
    replay = log.replay()
    assert sum(len(text) for _, text in replay) <= MAX_REPLAY_CHARS
    assert [text[:2] for _, text in replay] == [f"{i:02d}" for i in range(13, 20)]


TEXTS = [
    "one two three four five six seven eight nine ten",
    "supercalifragilistic is a word",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z antidisestablishmentarianism",
]


def test_the_replay_and_the_transcript_cut_an_answer_with_the_one_rule() -> None:
    """What the new session is told of a cut answer is what the transcript file says was
    heard (cut_text), for every share heard: the two can no longer disagree."""
    for text in TEXTS:
        for heard_ms in range(0, 1100, 50):
            log = Conversation(PCM16)
            log.observe(rt.AudioDelta("r1", "a1", 0, b"\x00" * 48 * 1000))
            log.observe(rt.Transcript("agent", "a1", text))
            log.cut("a1", heard_ms)
            heard = cut_text(text, heard_ms, 1000)
            expected = (
                [] if not heard else [("assistant", heard if heard == text else heard + " …")]
            )
            assert log.replay() == expected, (text, heard_ms)


def test_the_cut_uses_the_playbacks_figure_not_audio_that_came_after_it() -> None:
    """Deltas of the cancelled answer that arrive after the barge-in were never played: the
    cut divides by the audio the playback had received (ItemAccount.received_ms)."""
    log = Conversation(PCM16)
    log.observe(rt.AudioDelta("r1", "a1", 0, b"\x00" * 48 * 1000))
    log.observe(rt.Transcript("agent", "a1", TEXTS[0]))
    log.cut("a1", 500, audio_ms=1000.0)
    log.observe(rt.AudioDelta("r1", "a1", 0, b"\x00" * 48 * 1000))  # late, dropped unplayed
    assert log.replay() == [("assistant", "one two three four five …")]
