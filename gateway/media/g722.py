"""G.722 (ITU-T, 64 kbit/s SB-ADPCM): 16 kHz audio over RTP, through sippy's ``G722`` package.

RFC 3551 §4.5.2's quirk: the RTP clock of payload type 9 is 8000 Hz although the audio is
sampled at 16 kHz (an error in RFC 1890 kept for compatibility). At 64 kbit/s one payload byte
carries two 16 kHz samples, so a payload's length in bytes is its length in RTP clock ticks,
as for G.711: the receiver's timestamp arithmetic needs nothing new.

The ``G722`` package (libg722, Steve Underwood's bit-exact coder packaged by Sippy Software) is
C: 12 us to encode and 8 us to decode a 20 ms frame here. Its encoder and decoder are ADPCM,
so they keep state: one pair per call, and every frame sent goes through the encoder
(silence too), or the far end's decoder drifts from ours.

Packet loss: the library has no concealment. A lost frame is the last frame heard repeated at
half its level, then a quarter, then silence (``conceal``), which masks one or two lost
packets better than a hole; the ADPCM decoder's state, which missed the lost bytes, converges
back within a few milliseconds of the next packet (G.722's adaptation is fast by design).
"""

from __future__ import annotations

import G722 as _g722
import numpy as np

__all__ = ["G722_SPEC", "G722Codec", "G722Spec"]

PCM_RATE = 16000
CLOCK_RATE = 8000  # RFC 3551 §4.5.2
BITRATE = 64000
STATIC_PT = 9
FADE = (0.5, 0.25)  # the level of each repeated frame after a loss; then silence


class G722Codec:
    """One call's G.722 coder: an encoder for what we send, a decoder for what we hear."""

    name = "G722"
    rate = PCM_RATE
    clock_rate = CLOCK_RATE
    silence = None  # no byte decodes to silence: ADPCM needs the encoder to make it
    ticks = None  # one byte per RTP clock tick: the length is the duration (see above)

    __slots__ = ("_dec", "_enc", "_last", "_repeats")

    def __init__(self) -> None:
        self._enc = _g722.G722(PCM_RATE, BITRATE)
        self._dec = _g722.G722(PCM_RATE, BITRATE)
        self._last = np.zeros(0, dtype=np.int16)
        self._repeats = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        """16 kHz int16 samples (an even count) -> half as many payload bytes."""
        return bytes(self._enc.encode(np.ascontiguousarray(pcm, dtype=np.int16)))

    def decode(self, payload: bytes | bytearray | memoryview) -> np.ndarray:
        """Payload bytes -> twice as many 16 kHz int16 samples (a new array)."""
        pcm = np.frombuffer(self._dec.decode(bytes(payload)), dtype=np.int16)
        self._last, self._repeats = pcm, 0
        return pcm

    def counters(self) -> dict[str, int]:
        return {}  # a loss is the receiver's filled_ms already

    def conceal(self, ticks: int, following: bytes | None = None) -> np.ndarray:
        """Audio for ``ticks`` lost RTP clock ticks: the last frame heard, fading out."""
        out = np.zeros(ticks * PCM_RATE // CLOCK_RATE, dtype=np.int16)
        last = self._last
        if not len(last):
            return out
        pos = 0
        while pos < len(out) and self._repeats < len(FADE):
            piece = (last[: len(out) - pos] * FADE[self._repeats]).astype(np.int16)
            out[pos : pos + len(piece)] = piece
            pos += len(piece)
            self._repeats += 1
        return out


class G722Spec:
    """What SDP says of G.722, and the per-call coder it opens."""

    name = "G722"
    rate = PCM_RATE
    clock_rate = CLOCK_RATE
    channels = None
    payload_type = STATIC_PT

    def open(self, fmtp: str | None = None) -> G722Codec:
        return G722Codec()

    def rtpmap(self, pt: int) -> str:
        return f"{pt} G722/{CLOCK_RATE}"

    def fmtp(self, pt: int, peer: str | None, ptime_ms: int) -> str | None:
        return None

    def __repr__(self) -> str:
        return "G722Spec()"


G722_SPEC = G722Spec()
