"""The voicemail beep: one steady tone between 400 and 2000 Hz, 0.1 to 1.5 s long (sans-I/O).

The callee's audio is cut into fixed blocks (20 ms); each block is windowed (Hann) and its
spectrum taken at the bins of the band only, as a bank of Goertzel filters would (one
precomputed matrix product). A block is tonal when one peak holds nearly all its energy
(the peak's main lobe, +-2 bins, over the block's energy: Parseval) and it is loud enough;
a beep is a run of tonal blocks on the same frequency whose length is within the bounds,
reported when it ends (the moment a recorder starts recording). Speech has its energy in
many harmonics and formants, so it is rarely tonal for long; a dial tone or music lasts too
long or wanders.

Bounded state: one block buffer, the filter matrix, a few counters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Beep", "BeepDetector", "BeepRules"]

BLOCK_MS = 20
LOBE = 2  # bins each side of the peak that a Hann-windowed tone's energy falls in


@dataclass(frozen=True, slots=True)
class BeepRules:
    low_hz: float = 400.0
    high_hz: float = 2000.0
    min_ms: int = 100
    max_ms: int = 1500
    purity: float = 0.8  # the tone's share of a block's energy
    min_level: float = 200.0  # RMS (16-bit) a tonal block must reach (about -44 dBFS)


@dataclass(frozen=True, slots=True)
class Beep:
    hz: float
    ms: int


class BeepDetector:
    def __init__(self, rate: int = 8000, rules: BeepRules | None = None) -> None:
        self.rules = rules or BeepRules()
        self.rate = rate
        n = rate * BLOCK_MS // 1000
        self._n = n
        self._block = np.zeros(n, dtype=np.float64)
        self._filled = 0
        self._window = np.hanning(n)
        self._hz_per_bin = rate / n
        low = max(int(self.rules.low_hz / self._hz_per_bin) - LOBE, 1)
        high = min(int(np.ceil(self.rules.high_hz / self._hz_per_bin)) + LOBE, n // 2 - 1)
        self._first_bin = low
        bins = np.arange(low, high + 1)[:, None]
        phase = 2 * np.pi * bins * np.arange(n)[None, :] / n
        self._cos = np.cos(phase) * self._window
        self._sin = np.sin(phase) * self._window
        self._window_sq = self._window**2
        # Scratch, so that a block allocates nothing: the two projections, the squares.
        self._re = np.empty(len(bins))
        self._im = np.empty(len(bins))
        self._sq = np.empty(n)
        self._run_blocks = 0  # tonal blocks in a row
        self._run_bin = -1
        self._run_bins = 0  # the run's bins, summed (its mean frequency)

    @property
    def in_tone(self) -> bool:
        """The last block was part of a tone (a beep may be under way)."""
        return self._run_blocks > 0

    def feed(self, pcm: np.ndarray) -> Beep | None:
        """A frame of any length; the beep whose end this frame brings, if any."""
        found: Beep | None = None
        start = 0
        while start < len(pcm):
            take = min(self._n - self._filled, len(pcm) - start)
            self._block[self._filled : self._filled + take] = pcm[start : start + take]
            self._filled += take
            start += take
            if self._filled == self._n:
                self._filled = 0
                found = self._block_done(self._tone_bin()) or found
        return found

    def _tone_bin(self) -> int:
        """The block's tone bin, or -1 when it is not one tone in the band, loud enough."""
        x = self._block
        energy = float(np.dot(x, x))
        if energy < self.rules.min_level**2 * self._n:
            return -1
        re, im = np.dot(self._cos, x, out=self._re), np.dot(self._sin, x, out=self._im)
        power = np.add(np.square(re, out=re), np.square(im, out=im), out=re)
        peak = int(np.argmax(power))
        lobe = float(power[max(peak - LOBE, 0) : peak + LOBE + 1].sum())
        windowed = float(np.dot(np.square(x, out=self._sq), self._window_sq))
        purity = 2 * lobe / (self._n * windowed) if windowed > 0 else 0.0
        hz = (peak + self._first_bin) * self._hz_per_bin
        inside = self.rules.low_hz - self._hz_per_bin <= hz <= self.rules.high_hz + self._hz_per_bin
        return peak + self._first_bin if purity >= self.rules.purity and inside else -1

    def _block_done(self, tone: int) -> Beep | None:
        if tone >= 0 and (self._run_blocks == 0 or abs(tone - self._run_bin) <= 1):
            if self._run_blocks == 0:
                self._run_bin = tone
            self._run_blocks += 1
            self._run_bins += tone
            return None
        ended = self._ended()
        self._run_blocks, self._run_bins = (1, tone) if tone >= 0 else (0, 0)
        self._run_bin = tone
        return ended

    def _ended(self) -> Beep | None:
        """The run that just ended, as a beep when its length is a beep's."""
        blocks = self._run_blocks
        ms = blocks * BLOCK_MS
        if blocks and self.rules.min_ms <= ms <= self.rules.max_ms:
            return Beep(round(self._run_bins / blocks * self._hz_per_bin, 1), ms)
        return None
