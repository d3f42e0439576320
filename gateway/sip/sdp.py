"""SDP offer/answer for the call leg (RFC 3264), on top of aiosipua's negotiator.

We choose the codec by OUR preference (`media.codecs`), and answer
telephone-event with the payload type the offer used (aiosipua alone always
answers 101).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiosipua import SdpMessage, negotiate_sdp

from ..media.g711 import G711, codec_by_name


class NotAcceptable(Exception):
    """The offer cannot be answered: the call gets 488 Not Acceptable Here."""


@dataclass(frozen=True, slots=True)
class MediaPlan:
    """What the answer agreed on, for the media stream."""

    codec: G711
    payload_type: int
    remote: tuple[str, int] | None  # None when the offer names no usable address (0.0.0.0)
    dtmf_payload_type: int | None
    ptime_ms: int


def plan_media(offer: SdpMessage, codecs: list[str]) -> MediaPlan:
    """Choose codec, DTMF payload type and ptime; NotAcceptable when nothing fits."""
    audio = offer.audio
    if audio is None or audio.port == 0:
        raise NotAcceptable("the offer has no active audio stream")
    if not audio.proto.upper().startswith("RTP/AVP"):
        raise NotAcceptable(f"unsupported media transport {audio.proto} (RTP/AVP only)")
    chosen = next(
        (
            (codec_by_name(name), offered.payload_type)
            for name in codecs
            for offered in audio.codecs
            if offered.encoding_name.upper() == name and offered.clock_rate in (0, 8000)
        ),
        None,
    )
    if chosen is None:
        offered_names = [c.encoding_name or str(c.payload_type) for c in audio.codecs]
        raise NotAcceptable(f"no common codec: offered {offered_names}, we support {codecs}")
    codec, pt = chosen
    dtmf_pt = next(
        (c.payload_type for c in audio.codecs if c.encoding_name.lower() == "telephone-event"),
        None,
    )
    ptime = 20
    with contextlib.suppress(ValueError, IndexError):
        ptime = int(audio.attributes.get("ptime", ["20"])[0])
    if ptime not in (10, 20, 30, 40):
        ptime = 20
    remote = offer.rtp_address
    if remote is not None and remote[0] in ("0.0.0.0", "::"):
        remote = None
    return MediaPlan(codec, pt, remote, dtmf_pt, ptime)


def build_answer(offer: SdpMessage, plan: MediaPlan, local_ip: str, rtp_port: int) -> SdpMessage:
    answer, _ = negotiate_sdp(
        offer,
        local_ip=local_ip,
        rtp_port=rtp_port,
        supported_codecs=[plan.payload_type],
        dtmf_payload_type=plan.dtmf_payload_type if plan.dtmf_payload_type is not None else 0,
        ptime=plan.ptime_ms,
    )
    return answer
