"""Local barge-in's gate follows the caller: a voice far under their own level is not them.

A TV or the next table talks too, so WebRTC's detector calls it speech; what tells it from the
caller is its level against theirs. The caller's level is learned while the agent is silent
(their turns); then, while the agent talks, audio must be within ``below_caller_db`` of it.
Golden words from tests/unit/data (espeak-ng, 8 kHz); the levels here are synthetic.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.bridge.local_vad import LocalBargeIn
from gateway.bridge.voice_onset import (
    FRAME,
    LEARN_MIN_FRAMES,
    MAX_GATE_DBFS,
    CallerLevel,
    VoiceOnset,
)
from gateway.config import AgentConfig
from tests.unit.test_voice_onset import ULAW, level, pink, wav

FULL = 32767.0**2


def caller_turn(dbfs: float) -> np.ndarray:
    """The caller's words ("no", "wait", twice, short pauses): a turn of about 2 s."""
    gap = np.zeros(1600, dtype=np.float64)
    words = [wav("vad_no.wav"), gap, wav("vad_wait.wav"), gap] * 2
    return level(np.concatenate([w.astype(np.float64) for w in words]), dbfs)


def word(dbfs: float, name: str = "vad_no.wav") -> np.ndarray:
    lead = pink(0.3, -65.0)  # the line's hiss before it
    return np.concatenate((lead, level(wav(name).astype(np.float64), dbfs)))


def heard(det: VoiceOnset, x: np.ndarray) -> bool:
    return any(det.process(x[i : i + FRAME]) for i in range(0, len(x), FRAME))


def test_the_level_is_the_mean_power_of_the_frames_it_was_given() -> None:
    lv = CallerLevel()
    for _ in range(LEARN_MIN_FRAMES - 1):
        lv.add(FULL * 10 ** (-20 / 10))
    assert lv.dbfs is None  # not enough of the caller yet
    lv.add(FULL * 10 ** (-20 / 10))
    assert lv.dbfs == pytest.approx(-20.0)
    for _ in range(LEARN_MIN_FRAMES):
        lv.add(FULL * 10 ** (-30 / 10))
    assert lv.dbfs == pytest.approx(10 * np.log10((0.01 + 0.001) / 2), abs=0.01)  # -22.6
    for _ in range(2000):  # their level changes (another handset): it follows, slowly
        lv.add(FULL * 10 ** (-30 / 10))
    assert lv.dbfs == pytest.approx(-30.0, abs=0.1)


@pytest.mark.parametrize(("caller", "lo", "hi"), [(-15.0, -25.5, -22.0), (-20.0, -30.0, -27.0)])
def test_the_gate_is_below_the_caller_s_own_level(caller: float, lo: float, hi: float) -> None:
    det = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    assert det.gate_dbfs == -30.0  # not heard yet: the threshold
    det.listen(caller_turn(caller))
    assert det.caller.dbfs is not None
    assert det.caller.dbfs == pytest.approx(caller, abs=2.5)
    assert lo <= det.gate_dbfs <= hi


def test_key_tones_while_the_agent_is_silent_are_not_the_caller_s_level() -> None:
    """A caller keying in a number at -10 dBFS: WebRTC's detector calls the tones speech; taken
    as their level, the gate would stand 10 dB over their voice."""
    t = np.arange(int(0.1 * 8000)) / 8000
    key = np.sin(2 * np.pi * 770 * t) + np.sin(2 * np.pi * 1336 * t)
    keys = level(np.concatenate([key, 0 * t] * 15), -10.0)
    det = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    det.listen(keys)
    assert det.caller.frames == 0
    det.listen(caller_turn(-25.0))
    assert det.caller.dbfs == pytest.approx(-25.0, abs=2.5)


def test_before_the_caller_has_spoken_a_loud_line_raises_the_gate() -> None:
    """An agent that greets first, a line with noise louder than the threshold: the gate
    rises over the noise's loud frames before the caller's level is known (with
    below_caller_db null, the threshold alone, it does not)."""
    noise = pink(1.0, -26.0)
    follows, fixed = VoiceOnset(-30.0, 60, below_caller_db=7.0), VoiceOnset(-30.0, 60)
    for det in (follows, fixed):
        for i in range(0, len(noise), FRAME):
            det.process(noise[i : i + FRAME])
    assert follows.caller.dbfs is None
    assert -26.0 < follows.gate_dbfs <= MAX_GATE_DBFS
    assert fixed.gate_dbfs == -30.0


def test_the_threshold_holds_until_the_background_is_known_and_the_cap_always() -> None:
    quiet = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    quiet.listen(caller_turn(-30.0))
    assert quiet.caller.dbfs is not None and quiet.gate_dbfs == -30.0
    loud = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    loud.listen(caller_turn(-3.0))
    assert loud.gate_dbfs == MAX_GATE_DBFS


def test_on_a_quiet_line_a_quiet_caller_s_gate_drops_with_them() -> None:
    """Once 0.5 s of the line is heard while the agent talks (hiss at -65 dBFS), a -30 dBFS
    caller's gate is their level - 7, under the -30 dBFS threshold: their soft starts count."""
    det = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    det.listen(caller_turn(-30.0))
    assert not heard(det, pink(1.0, -65.0))
    assert det.caller.dbfs is not None
    assert det.gate_dbfs == pytest.approx(det.caller.dbfs - 7.0, abs=0.01)
    assert det.gate_dbfs < -36.0


def test_a_loud_background_keeps_the_gate_above_its_loud_frames() -> None:
    """Babble at -35 dBFS for the same caller: the gate stays 2 dB above the 95th percentile
    of the last 2 s (over -33 dBFS), so the crowd does not pause the agent."""
    det = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    det.listen(caller_turn(-30.0))
    babble = level(wav("vad_babble.wav").astype(np.float64), -35.0)
    assert not heard(det, babble)
    assert det.gate_dbfs > -33.0
    fixed = VoiceOnset(-38.0, 60)  # what the gate would be without the background
    assert heard(fixed, babble)


def test_a_voice_far_under_the_caller_does_not_pause_the_agent_and_the_caller_does() -> None:
    """The TV case: 'no' at -29 dBFS passes the fixed -30 dBFS gate; 14 dB under a -15 dBFS
    caller, it does not pass theirs. The caller's own 'no' still does."""
    fixed = VoiceOnset(-30.0, 60)
    assert heard(fixed, word(-29.0))
    det = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    det.listen(caller_turn(-15.0))
    assert not heard(det, word(-29.0))
    det.reset()
    assert heard(det, word(-17.0))


def test_nothing_is_learned_from_a_quiet_line_or_when_it_is_off() -> None:
    det = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    det.listen(pink(3.0, -55.0))  # under the learning floor: the detector never runs
    assert det.caller.frames == 0 and det.gate_dbfs == -30.0
    off = VoiceOnset(-30.0, 60)
    off.listen(caller_turn(-15.0))
    assert off.caller.frames == 0 and off.gate_dbfs == -30.0


def test_local_barge_in_learns_while_the_agent_is_silent_only() -> None:
    local = LocalBargeIn(1.0, 60, 600, "voice", below_caller_db=7.0)
    assert local._voice is not None
    turn = caller_turn(-15.0)
    assert not local.onset(turn, talking=False)  # learning makes no onset
    learned = local._voice.caller.frames
    assert learned >= LEARN_MIN_FRAMES and local._voice.gate_dbfs > -30.0
    local.onset(turn, talking=True)  # a barge-in: not a turn to learn from (echo may be in it)
    assert local._voice.caller.frames == learned


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="below_caller_db"):
        VoiceOnset(-30.0, 60, below_caller_db=-1.0)
    with pytest.raises(TypeError, match="int16"):
        VoiceOnset(-30.0, 60, below_caller_db=7.0).listen(np.zeros(160))


def test_config_default_and_off() -> None:
    on = AgentConfig.model_validate({"local_barge_in": {}}).local_barge_in
    off = AgentConfig.model_validate({"local_barge_in": {"below_caller_db": None}}).local_barge_in
    assert on is not None and on.below_caller_db == 7.0
    assert off is not None and off.below_caller_db is None


def test_the_caller_barging_in_is_not_taken_for_the_background() -> None:
    """After an onset the agent is held (still "talking") while the caller goes on; the
    service confirms and the agent stops: their words must not raise the gate for their
    next barge-in."""
    det = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    det.listen(caller_turn(-25.0))
    heard(det, pink(1.0, -65.0))
    before = det.gate_dbfs
    turn = caller_turn(-25.0)  # a barge-in, and 2 s more of them while the agent is held
    assert sum(det.process(turn[i : i + FRAME]) for i in range(0, len(turn), FRAME)) >= 1
    det.reset()  # the service confirmed: the agent stopped
    heard(det, pink(0.2, -65.0))  # its next answer
    assert det.gate_dbfs == pytest.approx(before, abs=1.0)
    for _ in range(4):  # four barge-ins, each ended by the service (the agent stops)
        det.reset()
        assert heard(det, np.concatenate((pink(0.6, -65.0), word(-30.0))))
        heard(det, pink(0.2, -65.0))
    assert det.gate_dbfs == pytest.approx(before, abs=1.0)  # their word starts left out


def test_noise_that_paused_the_agent_unconfirmed_is_learned_as_background() -> None:
    """Babble at -35 dBFS for a -30 dBFS caller on a line that was quiet: the gate starts at
    their level - 7 (-37), the crowd may pause the agent; not confirmed, the agent talks on,
    the crowd becomes the background and the gate rises over it."""
    det = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    det.listen(caller_turn(-30.0))
    heard(det, pink(1.0, -65.0))
    babble = level(wav("vad_babble.wav").astype(np.float64), -35.0)
    onsets = 0
    for _ in range(3):
        onsets += sum(det.process(babble[i : i + FRAME]) for i in range(0, len(babble), FRAME))
        det.unconfirmed()  # the service heard nothing: the agent talks on
    assert onsets <= 2
    assert det.gate_dbfs > -33.0


@pytest.mark.parametrize("confirmed", [False, True])
def test_what_follows_an_onset_is_background_only_if_the_service_did_not_confirm(
    confirmed: bool,
) -> None:
    """A pause, then 1.5 s of babble at -35 dBFS while the service decides. Not confirmed:
    the babble was the line, the gate rises over it. Confirmed (the agent stopped): it is
    dropped, the gate stays the quiet line's."""
    det = VoiceOnset(-30.0, 60, below_caller_db=7.0)
    det.listen(caller_turn(-30.0))
    heard(det, pink(1.0, -65.0))
    quiet_gate = det.gate_dbfs
    assert heard(det, word(-30.0))
    babble = level(wav("vad_babble.wav").astype(np.float64), -35.0)[:12000]
    heard(det, babble)
    if confirmed:
        det.reset()
    else:
        det.unconfirmed()
    assert (
        det.gate_dbfs == pytest.approx(quiet_gate, abs=0.5) if confirmed else det.gate_dbfs > -34.0
    )


def test_the_uplink_passes_on_the_service_s_unconfirmed_holds() -> None:
    """CallCore counts the holds the service did not confirm; the uplink tells the detector
    once per new one, so what followed the onset is learned as the line's."""
    from gateway.bridge.uplink import CallerAudio

    agent = AgentConfig.model_validate({"local_barge_in": {}})
    up = CallerAudio(ULAW, False, agent, 20, None, lambda: None)
    assert up.local is not None and up.local._voice is not None
    voice = up.local._voice
    turn = caller_turn(-20.0)
    for i in range(0, len(turn) // FRAME * FRAME, FRAME):
        up.convert(ULAW.encode(turn[i : i + FRAME]), talking=False)
    word_ = word(-20.0)
    for i in range(0, len(word_) // FRAME * FRAME, FRAME):
        up.convert(ULAW.encode(word_[i : i + FRAME]), talking=True)
    assert voice._pending_bg is not None  # an onset: held out, the service to say
    up.convert(ULAW.encode(np.zeros(FRAME, dtype=np.int16)), talking=True, unconfirmed=0)
    assert voice._pending_bg is not None
    up.convert(ULAW.encode(np.zeros(FRAME, dtype=np.int16)), talking=True, unconfirmed=1)
    assert voice._pending_bg is None  # learned
