"""The codecs a call can be in, by SDP encoding name, and what each one asks of the call.

A codec is described once (a *spec*: its name, RTP clock, rtpmap and fmtp, its static payload
type if it has one) and opened per call (``spec.open(peer_fmtp)``): G.711 is stateless and
shared, G.722 and Opus keep coder state for one call's two directions.

What the call sees of an opened codec (the ``Codec`` protocol):

* ``rate``: the sample rate of the PCM it takes and gives, the call's line side: 8000 (G.711),
  16000 (G.722), 24000 (Opus; the Realtime PCM16 rate, so nothing is resampled).
* ``clock_rate``: the RTP clock: 8000 for G.711 and G.722 (RFC 3551 §4.5.2), 48000 for Opus
  (RFC 7587 §4.1); telephone-event runs on the same clock (RFC 4733 §2.1).
* ``ticks``: None when a payload's length in bytes is its duration in clock ticks (G.711,
  G.722 at 64 kbit/s), else a function of the payload (Opus reads its TOC byte).
* ``silence``: the byte that decodes to silence (G.711), or None: the receiver then reports a
  gap as lost audio, and ``conceal`` makes it (G.722 fades the last frame, Opus uses its FEC
  and PLC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from .g711 import PCMA, PCMU
from .g722 import G722_SPEC
from .opus import OPUS_SPEC

__all__ = ["CODEC_NAMES", "Codec", "CodecSpec", "codec_spec", "is_g711"]


class Codec(Protocol):
    name: str
    rate: int
    clock_rate: int
    silence: int | None
    ticks: Callable[[bytes], int] | None

    def encode(self, pcm: np.ndarray) -> bytes: ...

    def decode(self, payload: bytes) -> np.ndarray: ...

    def conceal(self, ticks: int, following: bytes | None = None) -> np.ndarray: ...

    def counters(self) -> dict[str, int]:
        """The coder's own counts for the call's ``rtp.stats`` line (none for G.711)."""
        ...


class CodecSpec(Protocol):
    name: str
    rate: int
    clock_rate: int
    channels: int | None
    payload_type: int | None  # static payload type, None for a dynamic one

    def open(self, fmtp: str | None = None) -> Codec: ...

    def rtpmap(self, pt: int) -> str: ...

    def fmtp(self, pt: int, peer: str | None, ptime_ms: int) -> str | None: ...


_SPECS: dict[str, CodecSpec] = {
    "PCMU": PCMU,
    "PCMA": PCMA,
    "G722": G722_SPEC,
    "OPUS": OPUS_SPEC,
}
CODEC_NAMES = ("PCMU", "PCMA", "G722", "opus")  # as media.codecs spells them


def codec_spec(name: str) -> CodecSpec:
    """The codec an SDP encoding name means (case-insensitive, RFC 4855 §3)."""
    spec = _SPECS.get(name.upper()) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unsupported codec {name!r}: supported are {', '.join(CODEC_NAMES)}")
    return spec


def is_g711(codec: CodecSpec | Codec) -> bool:
    """G.711 can pass through to the Realtime service as it is (audio_format g711)."""
    return codec.name in ("PCMU", "PCMA")
