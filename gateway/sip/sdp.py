"""SDP offer/answer for the call leg (RFC 3264), on top of aiosipua's negotiator.

We choose the codec by OUR preference (`media.codecs`), and answer
telephone-event with the payload type the offer used (aiosipua alone always
answers 101). `SdpSession` keeps one call's side of the exchange across
re-INVITEs: our o= line, whose version moves only when our SDP changes
(§8), the codec in use, and whether we may send (hold, §8.4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from dataclasses import dataclass

from aiosipua import SdpMessage, build_sdp, negotiate_sdp, serialize_sdp

from ..media.g711 import G711, codec_by_name
from .addresses import ip_literal, valid_port
from .door import Door


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
    send: bool = True  # False while the peer holds the call (sendonly/inactive, or c=0.0.0.0)


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
    remote = _remote(offer)
    if remote is not None and remote[0] in ("0.0.0.0", "::"):
        remote = None
    # The peer's direction says what IT does: it only sends (sendonly) or nothing (inactive).
    send = audio.direction in ("sendrecv", "recvonly")
    return MediaPlan(codec, pt, remote, dtmf_pt, ptime, send)


def _remote(offer: SdpMessage) -> tuple[str, int] | None:
    """The audio's c= address and m= port, checked: an IP literal of the c= line's own address
    type and a port 1-65535. A host name is refused, never resolved: it would be looked up on
    every packet sent, on the event loop (RFC 4566 allows names; no PBX sends one)."""
    audio = offer.audio
    conn = (audio.connection if audio is not None else None) or offer.connection
    if audio is None or conn is None:
        return None
    if not valid_port(audio.port):
        raise NotAcceptable(f"m=audio port {audio.port} out of range")
    host = ip_literal(conn.address)
    if host is None or (":" in host) != (conn.addr_type.upper() == "IP6"):
        raise NotAcceptable(f"c= address {conn.address[:64]!r} is not an IP address")
    return host, audio.port


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


DTMF_PT = 101  # telephone-event in our own offers


class SdpSession:
    """One call's side of the offer/answer exchange, for the whole dialog."""

    def __init__(
        self,
        codecs: list[str],
        local_ip: str,
        rtp_port: int = 0,
        *,
        allow_to: Door | None = None,
    ) -> None:
        self.codecs = codecs
        # Where our RTP may go (media.allow_to); None: anywhere.
        self.allow_to = allow_to
        self.local_ip = local_ip
        self.rtp_port = rtp_port  # set once the RTP socket is bound
        self.plan: MediaPlan | None = None  # what is agreed and in force
        self.local: SdpMessage | None = None  # the last SDP we sent
        self._offered: MediaPlan | None = None  # our offer, waiting for its answer
        self._last_offer: MediaPlan | None = None
        self._id = str(secrets.randbelow(2**31))
        self._version = 0

    def first_plan(self, offer: SdpMessage | None) -> MediaPlan:
        """The media of a new call: from its offer, or what our own offer will propose."""
        if offer is not None:
            return self._allowed(plan_media(offer, self.codecs))
        codec = codec_by_name(self.codecs[0])
        return MediaPlan(codec, codec.payload_type, None, DTMF_PT, 20)

    def answer(self, offer: SdpMessage) -> tuple[MediaPlan, SdpMessage]:
        """Answer an offer; within a call the codec cannot change (its bridge is built)."""
        codecs = [self.plan.codec.name] if self.plan else self.codecs
        plan = self._allowed(plan_media(offer, codecs))
        answer = build_answer(offer, plan, self.local_ip, self.rtp_port)
        self.plan = plan
        return plan, self._stamp(answer)

    def offer(self) -> SdpMessage:
        """Our offer, for an INVITE or re-INVITE that came without one (late offer)."""
        # The same offer each time, so an offerless session refresh changes nothing (§8).
        base = self._last_offer or self.plan or self.first_plan(None)
        self._offered = self._last_offer = base
        sdp = build_sdp(
            self.local_ip,
            self.rtp_port,
            base.payload_type,
            base.codec.name,
            dtmf_payload_type=base.dtmf_payload_type or 0,
            ptime=base.ptime_ms,
        )
        return self._stamp(sdp)

    @property
    def awaiting_answer(self) -> bool:
        return self._offered is not None

    def accept_answer(self, answer: SdpMessage | None) -> MediaPlan:
        """The answer to our offer (in the ACK); NotAcceptable if it rejects or mangles it."""
        offered, self._offered = self._offered, None
        if offered is None:
            raise NotAcceptable("an answer arrived without an offer of ours")
        if answer is None:
            raise NotAcceptable("the ACK carries no SDP answer to our offer")
        plan = self._allowed(plan_media(answer, [offered.codec.name]))
        if plan.payload_type != offered.payload_type and offered.payload_type < 96:
            raise NotAcceptable(f"the answer changed payload type {offered.payload_type}")
        self.plan = plan
        return plan

    def refresh_answered(self, answer: SdpMessage) -> MediaPlan:
        """The answer to a session refresh that repeated our SDP: the codec in use stays,
        the peer's address and direction are taken (NotAcceptable if it breaks the call)."""
        if self.plan is None:
            raise NotAcceptable("no media agreed yet")
        plan = self._allowed(plan_media(answer, [self.plan.codec.name]))
        self.plan = plan
        return plan

    def _allowed(self, plan: MediaPlan) -> MediaPlan:
        """The plan, if its c= address is one we may send to (media.allow_to): an admitted
        peer's SDP must not aim our RTP at a third party."""
        if plan.remote is not None and self.allow_to is not None:
            if not self.allow_to.admits(plan.remote[0]):
                raise NotAcceptable(f"c= address {plan.remote[0]} is outside media.allow_to")
        return plan

    def _stamp(self, sdp: SdpMessage) -> SdpMessage:
        """Our o= line: one session id, a version that moves only when the SDP changes."""
        sdp.origin.session_id = self._id
        sdp.origin.session_version = str(self._version)
        if self.local is not None and _body(sdp) != _body(self.local):
            self._version += 1
            sdp.origin.session_version = str(self._version)
        self.local = sdp
        return sdp


def _body(sdp: SdpMessage) -> str:
    """The SDP without its o= line, to tell whether it changed."""
    same = dataclasses.replace(sdp, origin=dataclasses.replace(sdp.origin, session_version="0"))
    return serialize_sdp(same)
