"""A caller's voice, told from noise, for local barge-in (sans-I/O).

An energy threshold alone pauses the agent for any sound above it: steady noise, a crowded shop,
a door. Two tests, both needed, per 20 ms frame of the caller's 8 kHz audio:

* a level gate (cheap, first): the frame is at least ``gate_dbfs`` loud. It keeps quieter
  voices (a TV, the next table) from counting;
* WebRTC's speech detector (the GMM of ``webrtcvad``, mode 3, the strictest), which tells a
  voice's spectrum from steady or impulsive noise. It adapts to the background, so it must
  hear the noise too, not only the frames past the gate (fed only those, its first look at a
  noise takes it for a voice): it runs on every frame down to ``ADAPT_BELOW_DB`` under the
  gate, and not at all on a quieter line (most of the time, so most of the CPU saved).

Chosen over Silero VAD, TEN VAD and RNNoise on the same audio (``tests/perf/compare_vad.py``,
docs/barge-in.md): behind the gate it rejects the noise set at -35 dBFS as well as Silero does,
at a seventh of Silero's CPU, with no model file and no ONNX runtime. Its limit: louder noise
(bangs, key tones at -25 dBFS) passes it where Silero would not.

The gate follows the caller (``below_caller_db``): their own level, learned from their turns
(while the agent is silent: :meth:`VoiceOnset.listen`, frames WebRTC's detector calls speech,
their mean power), minus ``below_caller_db``. A caller at -20 dBFS then needs -28 dBFS to pause
the agent, and a TV or a crowd at -35 dBFS, 15 dB under them, does not. Kept above the
background: ``ABOVE_BG_DB`` over the 95th percentile of the line's frames in the last 2 s of the
agent talking (from 300 ms before an onset on, held out until the service decides: the agent
stops, it was the caller and is dropped; :meth:`unconfirmed`, it was noise and is learned), so a
quiet caller's
gate drops with them on a quiet line (their soft word starts count sooner) and not in a crowd.
Until the caller's level is known (0.5 s of their speech), ``gate_dbfs`` stands in for it,
and the background's term applies once 0.5 s of the line is known: a loud line raises the gate
before the caller has spoken (an agent that greets first). It never asks more than
``MAX_GATE_DBFS`` nor less than ``MIN_GATE_DBFS``.
Measured with ``tests/perf/compare_vad.py --below-caller-db --above-p95-db`` (docs/barge-in.md).

Onset: ``min_speech_ms`` of frames (rounded up to whole frames) that pass both, with gaps of
at most one frame, and at least one of them voiced (harmonic, :mod:`.voice_cues`); a key tone
frame never passes (nor counts as the caller's level). After an onset, the next needs
``REARM_MS`` without such a frame first.
"""

from __future__ import annotations

import math

import numpy as np
import webrtcvad

from ..media.native import dsp
from ..media.rates import TELEPHONE_RATE
from .voice_cues import key_tone, voiced

RATE = TELEPHONE_RATE
FRAME_MS = 20
FRAME = RATE * FRAME_MS // 1000
MODE = 3  # webrtcvad's most aggressive at calling noise "not speech"
ADAPT_BELOW_DB = 12.0  # the detector hears frames this far under the gate (its noise model)
REARM_MS = 300
_FULL_SCALE_SQ = 32767.0**2
LEARN_FLOOR_DBFS = -50.0  # quieter frames are never the caller's voice: not looked at
LEARN_MIN_FRAMES = 25  # 0.5 s of the caller's speech before their level counts
LEARN_FRAMES = 250  # their level is the mean power of about their last 5 s of speech
LEARN_EVERY = 4  # once their level is known, one loud frame in this many keeps it current
MAX_GATE_DBFS = -20.0  # the gate never asks more of a caller than this
MIN_GATE_DBFS = -45.0  # ...nor less than this
BG_FRAMES = 100  # the background: the caller's line over the last 2 s of the agent talking
BG_MIN_FRAMES = 25  # known after 0.5 s of it
BG_EVERY = 5  # its 95th percentile, recomputed every 100 ms
ABOVE_BG_DB = 3.0  # the gate stays this far above that percentile
BG_UNDO = 15  # at an onset, the last 300 ms heard were the caller's word starting


def _mean_square(dbfs: float) -> float:
    return _FULL_SCALE_SQ * 10.0 ** (dbfs / 10.0)


class CallerLevel:
    """The caller's speech level (mean power of their voiced frames), learned while the agent
    is silent; forgets slowly (an exponential mean over ``LEARN_FRAMES`` frames)."""

    def __init__(self) -> None:
        self.frames = 0
        self.mean_square = 0.0

    def add(self, mean_square: float) -> None:
        self.frames += 1
        self.mean_square += (mean_square - self.mean_square) / min(self.frames, LEARN_FRAMES)

    @property
    def known(self) -> bool:
        """Enough of the caller's speech has been heard."""
        return self.frames >= LEARN_MIN_FRAMES and self.mean_square > 0

    @property
    def dbfs(self) -> float | None:
        """None until enough of the caller's speech has been heard."""
        if not self.known:
            return None
        return 10.0 * math.log10(self.mean_square / _FULL_SCALE_SQ)


class VoiceOnset:
    """Feed int16 8 kHz audio in any chunks; True from :meth:`process` at a voice's onset."""

    def __init__(
        self, gate_dbfs: float, min_speech_ms: int, below_caller_db: float | None = None
    ) -> None:
        if not -90.0 <= gate_dbfs <= 0.0:
            raise ValueError(f"gate_dbfs must be between -90 and 0, got {gate_dbfs}")
        if min_speech_ms < 1:
            raise ValueError(f"min_speech_ms must be >= 1, got {min_speech_ms}")
        if below_caller_db is not None and not 0.0 <= below_caller_db <= 60.0:
            raise ValueError(f"below_caller_db must be between 0 and 60, got {below_caller_db}")
        self.gate_dbfs = self._base_dbfs = gate_dbfs
        self._below_caller = below_caller_db
        self.caller = CallerLevel()
        self._learn_floor = _mean_square(LEARN_FLOOR_DBFS)
        self._set_gate(gate_dbfs)
        self._min_ms = min_speech_ms
        self._vad = webrtcvad.Vad(MODE)
        self._pending = np.empty(0, dtype=np.int16)
        self._listen_pending = np.empty(0, dtype=np.int16)
        self._loud_heard = 0  # frames over the learning floor while the agent was silent
        self._bg = np.zeros(BG_FRAMES)  # mean squares of the last frames while it talked
        self._bg_n = 0
        self._pending_bg: list[float] | None = None  # heard since an onset, not yet placed
        self._run_ms = 0  # voiced ms in the current run
        self._run_voiced = False  # the run held a voiced (harmonic) frame
        self._gap_ms = 0  # ms since the last voiced frame
        self._armed = True
        self.frames = 0  # frames analysed
        self.detector_frames = 0  # frames the detector heard (loud enough to matter)

    def _set_gate(self, dbfs: float) -> None:
        self.gate_dbfs = dbfs
        self._gate = _mean_square(dbfs)
        self._floor = self._gate * 10.0 ** (-ADAPT_BELOW_DB / 10.0)

    def listen(self, pcm: np.ndarray) -> None:
        """The caller's audio while the agent is silent: learn their level (no onsets)."""
        if self._below_caller is None:
            return
        if _one_frame(self._listen_pending, pcm):
            learned = self._learn(pcm)  # one 20 ms packet: the usual case
        else:
            x = _frames_of(self._listen_pending, pcm)
            n = x.size // FRAME
            self._listen_pending = x[n * FRAME :].copy()
            learned = False
            for k in range(n):
                learned |= self._learn(x[k * FRAME : (k + 1) * FRAME])
        if learned:
            self._update_gate()

    def _learn(self, frame: np.ndarray) -> bool:
        """One frame of the caller's: True when it counted towards their level."""
        energy = _energy(frame)
        ms = energy / FRAME
        if ms < self._learn_floor:
            return False
        self._loud_heard += 1
        if self.caller.known and self._loud_heard % LEARN_EVERY:
            return False  # known: a sample of their frames keeps it current, for less CPU
        if not self._vad.is_speech(frame.tobytes(), RATE):
            return False
        if key_tone(frame.astype(np.float64), energy):
            return False
        self.caller.add(ms)
        return True

    def _update_gate(self) -> None:
        """The caller's level minus ``below_caller_db`` (``gate_dbfs`` until it is known),
        kept above the background's loud frames (once they are known)."""
        if self._below_caller is None:
            return
        level = self.caller.dbfs
        gate = self._base_dbfs if level is None else level - self._below_caller
        if self._bg_n >= BG_MIN_FRAMES:
            seen = self._bg[: min(self._bg_n, BG_FRAMES)]
            k = int(0.95 * (seen.size - 1))
            loud = float(np.partition(seen, k)[k])
            bg_dbfs = 10.0 * math.log10(max(loud, 1.0) / _FULL_SCALE_SQ)
            gate = max(gate, bg_dbfs + ABOVE_BG_DB, MIN_GATE_DBFS)
        else:
            gate = max(gate, self._base_dbfs)
        self._set_gate(min(gate, MAX_GATE_DBFS))

    def reset(self) -> None:
        """Forget the audio so far (the agent stopped talking): the next voice is new."""
        self._pending = np.empty(0, dtype=np.int16)
        self._run_ms = self._gap_ms = 0
        self._run_voiced = False
        self._armed = True
        self._pending_bg = None  # the agent stopped: it was the caller, not the background

    def process(self, pcm: np.ndarray) -> bool:
        if _one_frame(self._pending, pcm):
            return self._step(self._voice(pcm))  # one 20 ms packet: the usual case
        x = _frames_of(self._pending, pcm)
        n = x.size // FRAME
        self._pending = x[n * FRAME :].copy()
        fired = False
        for k in range(n):
            fired |= self._step(self._voice(x[k * FRAME : (k + 1) * FRAME]))
        return fired

    def _voice(self, frame: np.ndarray) -> int:
        """0: not the caller's voice; 1: may be (past the gate and the detector); 2: is, a
        voiced frame (:mod:`.voice_cues`)."""
        self.frames += 1
        energy = _energy(frame)
        ms = energy / FRAME
        if self._pending_bg is not None:  # after an onset: the caller's, or noise? (unknown)
            if len(self._pending_bg) < BG_FRAMES:
                self._pending_bg.append(ms)
        elif self._below_caller is not None:
            self._add_bg(ms)
        if ms < self._floor:
            return 0
        self.detector_frames += 1
        if not self._vad.is_speech(frame.tobytes(), RATE) or ms < self._gate:
            return 0
        if not self._armed:
            return 1  # an onset was just reported: only its end matters now
        f = frame.astype(np.float64)
        if not self._run_voiced and not voiced(f):
            return 1  # not voiced, so no key tone either (one is as harmonic as it gets)
        return 0 if key_tone(f, energy) else 2

    def _add_bg(self, ms: float) -> None:
        self._bg[self._bg_n % BG_FRAMES] = ms
        self._bg_n += 1
        if self._bg_n % BG_EVERY == 0:
            self._update_gate()

    def _hold_bg(self) -> None:
        """An onset: what is heard from 300 ms before it on may be the caller (the service
        will say) and is held out of the background until then."""
        n = min(self._bg_n, BG_FRAMES)
        undo = min(BG_UNDO, n)
        idx = [(self._bg_n - k) % BG_FRAMES for k in range(undo, 0, -1)]
        self._pending_bg = [float(v) for v in self._bg[idx]]
        rest = np.delete(self._bg[:n], idx)
        self._bg[idx] = float(np.median(rest)) if rest.size else 0.0
        self._update_gate()

    def unconfirmed(self) -> None:
        """The service did not hear the caller: what paused the agent was the line's noise,
        and is learned as its background (so it does not pause it again)."""
        pending, self._pending_bg = self._pending_bg, None
        for ms in pending or ():
            self._add_bg(ms)

    def _step(self, voice: int) -> bool:
        if voice:
            self._gap_ms = 0
            self._run_ms += FRAME_MS
            self._run_voiced |= voice == 2
            if self._armed and self._run_ms >= self._min_ms and self._run_voiced:
                self._armed = False
                if self._below_caller is not None and self._pending_bg is None:
                    self._hold_bg()
                return True
            return False
        self._gap_ms += FRAME_MS
        if self._gap_ms > FRAME_MS:
            self._run_ms = 0
            self._run_voiced = False
        if self._gap_ms >= REARM_MS:
            self._armed = True
        return False


def _energy(frame: np.ndarray) -> float:
    """The sum of a frame's squared samples, on every frame the detector looks at: in C where
    it was built (0.1 us against 1.7 for a float copy and its dot product), the same value
    (integer sums, exact either way)."""
    if dsp is not None and frame.flags.c_contiguous:
        return float(dsp.energy(frame))
    f = frame.astype(np.float64)
    return float(np.dot(f, f))


def _one_frame(pending: np.ndarray, pcm: np.ndarray) -> bool:
    """Nothing left over and ``pcm`` is exactly one int16 frame: it needs no joining."""
    return not pending.size and pcm.shape == (FRAME,) and pcm.dtype == np.int16


def _frames_of(pending: np.ndarray, pcm: np.ndarray) -> np.ndarray:
    """What was left over, then ``pcm`` (checked: int16)."""
    x = np.asarray(pcm)
    if x.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {x.dtype}")
    x = x.reshape(-1)
    return np.concatenate((pending, x)) if pending.size else x
