"""The sample rates the gateway works at, defined once.

The telephone side is G.711: 8000 samples a second, which is also the RTP clock of its
payload types and of RFC 4733 telephone-events negotiated beside it (RFC 3551 §4.5.14, RFC 4733
§2.1). The model side is the Realtime API's PCM16 at 24000 samples a second.
"""

from __future__ import annotations

__all__ = ["MODEL_RATE", "TELEPHONE_RATE"]

TELEPHONE_RATE = 8000  # G.711 audio and the RTP clock of its packets (Hz)
MODEL_RATE = 24000  # the Realtime model's PCM16 audio in and out (Hz)
