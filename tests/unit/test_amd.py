"""Answering-machine detection without a call: the cadence rules (app_amd's), the beep
detector and the call's screen, on synthesized signals (silence, tones, speech-like bursts)
and on a few espeak-ng items at telephone quality."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from gateway.bridge.screening import (
    AnswerScreen,
    Decided,
    LeaveMessage,
    effective_mode,
    reported,
    screen_for,
)
from gateway.config import AmdConfig, ConfigError, parse_config
from gateway.media.amd import AmdDecision, CadenceDetector, CadenceRules
from gateway.media.beep import BeepDetector
from gateway.routing import CallInfo, Router
from tests.perf import amd_set

RATE = 8000
FRAME = 160
MESSAGE = "Hi, this is Acme Dental: your appointment is tomorrow at nine."


def tone(hz: float, seconds: float, dbfs: float = -20.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (10 ** (dbfs / 20) * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def burst(seconds: float, seed: int = 1, dbfs: float = -20.0) -> np.ndarray:
    """Speech-like: noise shaped by a 4 Hz syllable envelope that never falls silent (a
    word's voice without pauses), at ``dbfs`` RMS."""
    n = round(seconds * RATE)
    noise = np.random.default_rng(seed).normal(0, 1, n)
    envelope = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 2 * np.arange(n) / RATE))
    x = noise * envelope
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20) * 32767).astype(np.int16)


def words(count: int, word_s: float = 0.3, gap_s: float = 0.16) -> np.ndarray:
    parts = []
    for i in range(count):
        parts += [silence(gap_s), burst(word_s, seed=i)]
    return np.concatenate(parts)


def decide(signal: np.ndarray, rules: CadenceRules | None = None) -> AmdDecision | None:
    detector = CadenceDetector(rules)
    for i in range(0, len(signal), FRAME):
        if (decision := detector.feed(signal[i : i + FRAME])) is not None:
            return decision
    return None


# --- the cadence rules ------------------------------------------------------------------------


def test_a_short_hello_then_silence_is_a_human_after_the_silence() -> None:
    decision = decide(np.concatenate([silence(0.2), burst(0.5), silence(3)]))
    assert decision == AmdDecision("human", "human", 200 + 500 + 800)


def test_a_long_greeting_is_a_machine_once_it_has_lasted_greeting_ms() -> None:
    # One unbroken voice: no words are counted (the first one never is), the greeting rule.
    decision = decide(np.concatenate([silence(0.2), burst(4.0), silence(3)]))
    assert decision == AmdDecision("machine", "longgreeting", 200 + 1500)


def test_many_words_are_a_machine_at_the_third() -> None:
    decision = decide(np.concatenate([words(5), silence(3)]))
    assert decision is not None and (decision.result, decision.cause) == ("machine", "maxwords")
    # the third word counts once it has lasted min_word_length_ms
    assert decision.ms == round(1000 * (3 * 0.16 + 2 * 0.3 + 0.1))


def test_two_words_and_silence_are_a_human() -> None:
    decision = decide(np.concatenate([words(2), silence(3)]))
    assert decision is not None and decision.result == "human"


def test_silence_from_the_start_is_a_machine_at_initial_silence() -> None:
    assert decide(silence(4)) == AmdDecision("machine", "initialsilence", 2500)


def test_a_line_noise_under_the_threshold_is_silence() -> None:
    quiet = burst(4.0, dbfs=-50)  # mean |x| about 84, under 256
    assert decide(quiet) == AmdDecision("machine", "initialsilence", 2500)


def test_nothing_decided_within_the_analysis_time_is_unknown() -> None:
    rules = CadenceRules(initial_silence_ms=10_000, total_analysis_time_ms=2000)
    assert decide(silence(3), rules) == AmdDecision("unknown", "toolong", 2000)


def test_one_very_long_word_is_a_machine() -> None:
    rules = CadenceRules(greeting_ms=60_000, maximum_word_length_ms=1200)
    decision = decide(np.concatenate([silence(0.2), burst(2.0)]), rules)
    assert decision == AmdDecision("machine", "maxwordlength", 1400)


def test_the_decision_comes_once_and_frames_of_any_length_count_by_their_samples() -> None:
    detector = CadenceDetector()
    signal = np.concatenate([silence(0.2), burst(0.5), silence(3)])
    decisions = [detector.feed(signal[i : i + 240]) for i in range(0, len(signal), 240)]
    found = [d for d in decisions if d is not None]
    assert len(found) == 1 and found[0].result == "human" and 1500 <= found[0].ms <= 1530


def test_a_full_scale_negative_frame_does_not_wrap() -> None:
    detector = CadenceDetector(CadenceRules(silence_threshold=30000))
    frame = np.full(FRAME, -32768, dtype=np.int16)  # |x| is 32768: voice, not silence
    for _ in range(100):
        detector.feed(frame)
    assert detector._voice_ms > 0


# --- the beep -----------------------------------------------------------------------------


def beeps(signal: np.ndarray, frame: int = FRAME) -> list:
    detector = BeepDetector(RATE)
    return [b for i in range(0, len(signal), frame) if (b := detector.feed(signal[i : i + frame]))]


@pytest.mark.parametrize("hz", [400, 525, 1000, 1337, 1400, 1975])
@pytest.mark.parametrize("seconds", [0.12, 0.5, 1.4])
def test_one_tone_in_the_band_is_a_beep_reported_when_it_ends(hz: float, seconds: float) -> None:
    found = beeps(np.concatenate([silence(0.3), tone(hz, seconds), silence(0.3)]))
    assert len(found) == 1
    assert abs(found[0].hz - hz) <= 50 and abs(found[0].ms - seconds * 1000) <= 40


@pytest.mark.parametrize("frame", [80, 240, 320, 1000])
def test_frames_of_any_length_find_the_same_beep(frame: int) -> None:
    found = beeps(np.concatenate([silence(0.3), tone(1000, 0.5), silence(0.3)]), frame)
    assert [(b.hz, b.ms) for b in found] == [(1000.0, 500)]


@pytest.mark.parametrize(
    "signal",
    [
        np.concatenate([tone(250, 0.5), silence(0.2)]),  # under the band
        np.concatenate([tone(2600, 0.5), silence(0.2)]),  # over it
        np.concatenate([tone(1000, 0.06), silence(0.2)]),  # a click, not a beep
        np.concatenate([tone(1000, 2.5), silence(0.2)]),  # a dial tone, too long
        np.concatenate([tone(440, 0.5) + tone(1200, 0.5), silence(0.2)]),  # two tones
        np.concatenate([tone(1000, 0.5, dbfs=-60), silence(0.2)]),  # too faint
        np.concatenate([burst(2.0), silence(0.2)]),  # noise-like speech
        silence(1.0),
    ],
    ids=["250Hz", "2600Hz", "60ms", "2.5s", "two-tones", "faint", "burst", "silence"],
)
def test_what_is_not_one_steady_tone_in_the_band_is_no_beep(signal: np.ndarray) -> None:
    assert beeps(signal) == []


def test_a_tone_sweeping_across_the_band_is_no_beep() -> None:
    t = np.arange(RATE) / RATE
    sweep = (3000 * np.sin(2 * np.pi * (400 * t + 800 * t**2))).astype(np.int16)
    assert beeps(np.concatenate([sweep, silence(0.2)])) == []


# --- the call's screen --------------------------------------------------------------------


def cfg(**fields) -> AmdConfig:
    return AmdConfig(**({"mode": "voicemail", "voicemail_message": MESSAGE} | fields))


def screened(screen: AnswerScreen, signal: np.ndarray, t0: float = 0.0) -> list:
    """Feed 20 ms frames on the signal's own clock, ticking at the screen's deadlines as the
    call's timer does; every outcome with the time it came."""
    out = []
    for i in range(0, len(signal), FRAME):
        now = t0 + (i + FRAME) / RATE
        deadline = screen.deadline
        if deadline is not None and now >= deadline:
            out += [(round(now, 2), o) for o in screen.tick(now)]
        out += [(round(now, 2), o) for o in screen.audio(signal[i : i + FRAME], now)]
    return out


def test_voicemail_waits_for_the_beep_then_leaves_the_message() -> None:
    screen = AnswerScreen("voicemail", cfg())
    screen.start(0.0)
    greeting = np.concatenate([silence(0.2), burst(3.0)])
    out = screened(screen, np.concatenate([greeting, silence(0.4), tone(1000, 0.5), silence(2)]))
    (t1, decided), (t2, left) = out
    assert isinstance(decided, Decided) and decided.decision.result == "machine"
    assert t1 == 1.7 and not screen.passing  # the greeting never reaches the model
    assert isinstance(left, LeaveMessage) and left.after == "beep" and left.message == MESSAGE
    assert t2 == 4.12 and left.ms == 4120 and left.beep_hz == 1000.0
    assert screen.deadline is None and screen.tick(100.0) == ()


def test_voicemail_without_a_beep_leaves_it_after_the_silence_that_follows_the_greeting() -> None:
    screen = AnswerScreen("voicemail", cfg(no_beep_silence_ms=1500))
    screen.start(0.0)
    out = screened(screen, np.concatenate([silence(0.2), burst(3.0), silence(4)]))
    assert [type(o) for _, o in out] == [Decided, LeaveMessage]
    t, left = out[1]
    assert left.after == "silence" and t == pytest.approx(3.2 + 1.5, abs=0.03)


def test_voicemail_gives_up_waiting_for_the_beep_at_the_timeout() -> None:
    screen = AnswerScreen("voicemail", cfg(beep_timeout_s=2.0))
    screen.start(0.0)
    out = screened(screen, np.concatenate([silence(0.2), burst(6.0)]))
    t, left = out[1]
    assert left.after == "timeout" and t == pytest.approx(1.7 + 2.0, abs=0.03)


def test_a_beep_after_a_short_greeting_makes_it_a_machine_and_the_message_follows() -> None:
    screen = AnswerScreen("voicemail", cfg(greeting_ms=5000))
    screen.start(0.0)
    out = screened(screen, np.concatenate([burst(0.8), silence(0.3), tone(850, 0.3), silence(2)]))
    (t1, decided), (t2, left) = out
    assert decided.decision.cause == "beep" and left.after == "beep" and t1 == t2 == 1.42


def test_a_human_in_voicemail_mode_is_as_in_detect_the_model_hears_them_from_then_on() -> None:
    screen = AnswerScreen("voicemail", cfg())
    screen.start(0.0)
    out = screened(screen, np.concatenate([burst(0.5), silence(3)]))
    [(t, decided)] = out
    assert decided.decision.result == "human" and decided.speaks_first and t == 1.3
    assert screen.passing and screen.deadline is None


def test_no_audio_at_all_is_unknown_when_the_analysis_time_is_up() -> None:
    screen = AnswerScreen("detect", cfg(mode="detect"))
    screen.start(10.0)
    assert screen.deadline == 15.5 and screen.tick(15.4) == ()
    [decided] = screen.tick(15.5)
    assert decided.decision == AmdDecision("unknown", "noaudio", 5500)
    assert decided.speaks_first and screen.passing


def test_voicemail_without_a_message_is_detect() -> None:
    route = SimpleNamespace(amd="voicemail", agent=SimpleNamespace(amd=AmdConfig()))
    log = Log()
    screen = screen_for(route, log)
    assert screen is not None and screen.mode == "detect"
    assert log.lines[0][0] == "call.amd_no_voicemail_message"


def test_the_calls_own_mode_wins_over_its_profiles_unless_off() -> None:
    profile = SimpleNamespace(amd=AmdConfig(mode="detect"))
    assert effective_mode(SimpleNamespace(amd="voicemail", agent=profile)) == "voicemail"
    assert effective_mode(SimpleNamespace(amd="off", agent=profile)) == "detect"
    assert effective_mode(SimpleNamespace(agent=profile)) == "detect"  # no Selection.amd
    off = SimpleNamespace(agent=SimpleNamespace(amd=AmdConfig()))
    assert screen_for(off, Log()) is None


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def _log(self, event: str, **fields) -> None:
        self.lines.append((event, fields))

    info = warning = _log


def test_outcomes_go_to_the_record_the_log_and_the_decision_to_the_events() -> None:
    record, log, events = SimpleNamespace(amd=None), Log(), []
    decided = Decided(AmdDecision("machine", "longgreeting", 1700), "voicemail")
    reported(record, lambda kind, data: events.append((kind, data)), log, decided)
    reported(record, lambda *a: events.append(a), log, LeaveMessage("beep", 4120, "x", 1000.0))
    assert record.amd == {
        "mode": "voicemail",
        "result": "machine",
        "cause": "longgreeting",
        "ms": 1700,
        "voicemail": {"after": "beep", "ms": 4120, "beep_hz": 1000.0},
    }
    assert events == [
        (
            "call.amd",
            {"mode": "voicemail", "result": "machine", "cause": "longgreeting", "ms": 1700},
        )
    ]
    assert [name for name, _ in log.lines] == ["call.amd", "call.voicemail"]


# --- config and routing ---------------------------------------------------------------------


def test_voicemail_mode_needs_a_message_and_an_unquoted_off_is_off() -> None:
    with pytest.raises(ConfigError, match=r"agent\.amd: mode voicemail needs a voicemail_message"):
        parse_config({"agent": {"amd": {"mode": "voicemail"}}})
    assert parse_config({"agent": {"amd": {"mode": False}}}).agent.amd.mode == "off"
    with pytest.raises(ConfigError, match=r"agent\.amd\.mode"):
        parse_config({"agent": {"amd": {"mode": "maybe"}}})


def test_the_voicemail_message_is_filled_with_the_calls_values() -> None:
    amd = {"mode": "voicemail", "voicemail_message": "Hello ${name}, call ${caller} back."}
    router = Router(parse_config({"agent": {"amd": amd}}))
    route = router.select(CallInfo(caller="100"), variables={"name": "Anna"})
    assert route.agent.amd.voicemail_message == "Hello Anna, call 100 back."
    assert route.amd == "off"  # an inbound call has no mode of its own


# --- espeak-ng at telephone quality ---------------------------------------------------------

espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def line(text: str, voice: str = "en-us", speed: int = 160, lead_s: float = 0.3) -> np.ndarray:
    speech = amd_set.at_level(amd_set.espeak(text, voice, speed), -20.0)
    return amd_set.telephone(np.concatenate([amd_set.silence(lead_s), speech]), seed=7)


@espeak
@pytest.mark.parametrize("text", ["Hello?", "Yes, speaking."])
def test_espeak_short_answers_are_humans(text: str) -> None:
    decision = decide(np.concatenate([line(text), silence(3)]))
    assert decision is not None and decision.result == "human" and decision.ms < 2500


@espeak
def test_an_espeak_voicemail_greeting_with_a_beep_leaves_the_message_after_the_beep() -> None:
    greeting = line(
        "Hi, you've reached the voicemail of John Smith. Please leave a message after the tone."
    )
    signal = np.concatenate([greeting, silence(0.5), tone(1000, 0.4, dbfs=-17), silence(3)])
    screen = AnswerScreen("voicemail", cfg())
    screen.start(0.0)
    out = screened(screen, signal)
    (t1, decided), (t2, left) = out
    assert decided.decision.result == "machine" and t1 < 2.5
    beep_end = (len(greeting) + 0.9 * RATE) / RATE
    assert left.after == "beep" and 0 <= t2 - beep_end <= 0.1
