"""Answering-machine detection from the cadence of the first seconds of an answer (sans-I/O).

The classic rules of Asterisk's ``app_amd`` (Aheeva's algorithm), with its parameters and
defaults: a person answers with a short greeting ("Hello?") and then waits, so a short burst
of voice followed by silence is a human; a machine plays a long, uninterrupted greeting, so
much voice, many words, a very long word, or a long silence before anything is said is a
machine; nothing decided within the analysis time is unknown. Each frame is voice or silence
by its mean absolute sample value (Asterisk's ``ast_dsp_silence``), and time is the audio's
own (the frames' lengths), as in Asterisk.

Bounded state: a few counters and a scratch buffer. A frame costs one pass over its samples
and allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["HUMAN", "MACHINE", "UNKNOWN", "AmdDecision", "CadenceDetector", "CadenceRules"]

HUMAN, MACHINE, UNKNOWN = "human", "machine", "unknown"
Result = Literal["human", "machine", "unknown"]


@dataclass(frozen=True, slots=True)
class CadenceRules:
    """app_amd's parameters (amd.conf), in milliseconds, with its defaults."""

    initial_silence_ms: int = 2500  # silence before any word: a machine
    greeting_ms: int = 1500  # this much voice once the greeting started: a machine
    after_greeting_silence_ms: int = 800  # silence after the greeting: a human
    total_analysis_time_ms: int = 5000  # no decision by then: unknown
    min_word_length_ms: int = 100  # voice this long is a word
    between_words_silence_ms: int = 50  # silence this long ends a word
    maximum_number_of_words: int = 3  # this many words: a machine
    maximum_word_length_ms: int = 5000  # one word this long: a machine
    silence_threshold: int = 256  # mean |sample| (16-bit) below which a frame is silence


@dataclass(frozen=True, slots=True)
class AmdDecision:
    """What answered, why (app_amd's AMDCAUSE, in lower case), and after how much audio."""

    result: Result
    cause: str  # initialsilence, human, maxwords, longgreeting, maxwordlength, toolong, beep...
    ms: int


class LevelMeter:
    """Mean absolute sample value of a PCM16 frame (0 for an empty one), ast_dsp's measure,
    in a scratch buffer kept between frames (it grows to the longest frame seen, once)."""

    def __init__(self, samples: int = 480) -> None:
        self._scratch = np.empty(samples, dtype=np.int32)

    def __call__(self, pcm: np.ndarray) -> float:
        n = len(pcm)
        if not n:
            return 0.0
        if n > len(self._scratch):
            self._scratch = np.empty(n, dtype=np.int32)
        out = self._scratch[:n]
        # Widened first: np.abs on int16 would wrap -32768.
        np.abs(pcm, out=out, dtype=np.int32)
        return float(out.sum(dtype=np.int64)) / n


class CadenceDetector:
    """Feed it the callee's PCM16 frames from the answer on; it answers once with a decision."""

    def __init__(self, rules: CadenceRules | None = None, rate: int = 8000) -> None:
        self.rules = rules or CadenceRules()
        self.rate = rate
        self.decision: AmdDecision | None = None
        self.level = LevelMeter(rate * 60 // 1000)
        self._total_ms = 0.0
        self._silence_ms = 0.0  # consecutive silence (ast_dsp's totalsilence)
        self._voice_ms = 0.0  # all voice since the answer
        self._word_ms = 0.0  # consecutive voice
        self._words = 0
        self._in_word = True  # app_amd starts in STATE_IN_WORD: a first word is not counted
        self._in_initial_silence = True
        self._in_greeting = False

    def feed(self, pcm: np.ndarray) -> AmdDecision | None:
        """One frame of the callee's audio; the decision when this frame makes it."""
        if self.decision is not None:
            return None
        ms = len(pcm) * 1000 / self.rate
        return self.step(self.level(pcm) >= self.rules.silence_threshold, ms)

    def step(self, voiced: bool, ms: float) -> AmdDecision | None:
        """One frame judged voice or silence, ``ms`` long (app_amd's loop body)."""
        if self.decision is not None:
            return None
        rules = self.rules
        self._total_ms += ms
        if self._total_ms >= rules.total_analysis_time_ms:
            return self._decide(UNKNOWN, "toolong")
        if not voiced:
            self._silence_ms += ms
            if self._silence_ms >= rules.between_words_silence_ms:
                self._in_word = False
                self._word_ms = 0.0
            if self._in_initial_silence and self._silence_ms >= rules.initial_silence_ms:
                return self._decide(MACHINE, "initialsilence")
            if self._in_greeting and self._silence_ms >= rules.after_greeting_silence_ms:
                return self._decide(HUMAN, "human")
            return None
        self._silence_ms = 0.0
        self._word_ms += ms
        self._voice_ms += ms
        if self._word_ms >= rules.min_word_length_ms and not self._in_word:
            self._words += 1
            self._in_word = True
        if self._word_ms >= rules.maximum_word_length_ms:
            return self._decide(MACHINE, "maxwordlength")
        if self._words >= rules.maximum_number_of_words:
            return self._decide(MACHINE, "maxwords")
        if self._in_greeting and self._voice_ms >= rules.greeting_ms:
            return self._decide(MACHINE, "longgreeting")
        if self._word_ms >= rules.min_word_length_ms and not self._in_greeting:
            self._in_initial_silence = False
            self._in_greeting = True
        return None

    @property
    def elapsed_ms(self) -> int:
        """Audio analysed so far."""
        return round(self._total_ms)

    def _decide(self, result: Result, cause: str) -> AmdDecision:
        self.decision = AmdDecision(result, cause, round(self._total_ms))
        return self.decision
