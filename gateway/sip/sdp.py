"""SDP offer/answer for the call leg (RFC 3264), on top of aiosipua's negotiator.

We choose the codec by OUR preference (`media.codecs`: PCMU, PCMA, G722, opus), and
answer telephone-event with the payload type the offer used (aiosipua alone always
answers 101) and only on the codec's RTP clock (RFC 4733 §2.1: 8000 beside G.711 and
G.722, 48000 beside Opus). The answer's rtpmap and fmtp lines are ours (``_media_lines``):
Opus is ``opus/48000/2`` with its fmtp (RFC 7587 §7), whatever aiosipua writes.
`SdpSession` keeps one call's side of the exchange across re-INVITEs: our o= line, whose
version moves only when our SDP changes (§8), the codec in use, and whether we may send
(hold, §8.4).

SRTP with SDES (RFC 4568): an RTP/SAVP offer names its suites and keys in ``a=crypto``
lines; we pick the first of ``media.srtp_suites`` it offers and answer with a key of our
own for that suite (the offer's tag). Keys ride in the SDP, so by default they are taken
only over TLS signalling (``SrtpPolicy.secure_signalling``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiosipua import SdpMessage, build_sdp, negotiate_sdp, serialize_sdp
from aiosipua.sdp import Codec, MediaDescription

from ..media.codecs import CodecSpec, codec_spec
from ..media.srtp import BadCrypto, CryptoAttribute, SrtpSession, available_suites, parse_crypto
from .addresses import ip_literal, valid_port
from .door import Door

if TYPE_CHECKING:
    from ..config.media import MediaConfig

_SUITE_NAME = re.compile(r"[A-Z0-9]{1,20}(?:_[A-Z0-9]{1,20}){1,8}")


class NotAcceptable(Exception):
    """The offer cannot be answered: the call gets 488 Not Acceptable Here."""


@dataclass(frozen=True, slots=True)
class MediaPlan:
    """What the answer agreed on, for the media stream."""

    codec: CodecSpec
    payload_type: int
    remote: tuple[str, int] | None  # None when the offer names no usable address (0.0.0.0)
    dtmf_payload_type: int | None
    ptime_ms: int
    send: bool = True  # False while the peer holds the call (sendonly/inactive, or c=0.0.0.0)
    # SRTP (RTP/SAVP): the peer's key, which unprotects what we hear, and ours, which
    # protects what we send (filled in by SdpSession); both None for plain RTP.
    remote_crypto: CryptoAttribute | None = None
    local_crypto: CryptoAttribute | None = None
    codec_fmtp: str | None = None  # the peer's fmtp for the codec (Opus: what it can decode)


@dataclass(frozen=True, slots=True)
class SrtpPolicy:
    """media.srtp and its companions, with what the call's signalling is (TLS or not)."""

    mode: str = "optional"  # off | optional | required
    suites: tuple[str, ...] = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
    secure_signalling: bool = False  # the call came over TLS
    allow_insecure: bool = False  # media.srtp_over_insecure_signalling

    @property
    def keys_allowed(self) -> bool:
        return self.secure_signalling or self.allow_insecure

    @classmethod
    def configured(cls, media: MediaConfig, transport: str) -> SrtpPolicy:
        """The policy of the config's ``media`` section for a call signalled over
        ``transport`` (keys travel only over TLS unless allowed otherwise)."""
        return cls(
            media.srtp,
            tuple(media.srtp_suites),
            secure_signalling=transport == "TLS",
            allow_insecure=media.srtp_over_insecure_signalling,
        )


PLAIN = SrtpPolicy()


def plan_media(offer: SdpMessage, codecs: list[str], srtp: SrtpPolicy = PLAIN) -> MediaPlan:
    """Choose codec, DTMF payload type, ptime and SRTP suite; NotAcceptable when nothing
    fits."""
    audio = offer.audio
    if audio is None or audio.port == 0:
        raise NotAcceptable("the offer has no active audio stream")
    proto = audio.proto.upper()
    remote_crypto = None
    if proto.startswith("RTP/SAVP"):
        remote_crypto = _crypto(audio.attributes.get("crypto", []), srtp)
    elif not proto.startswith("RTP/AVP"):
        raise NotAcceptable(f"unsupported media transport {audio.proto[:32]} (RTP/AVP, RTP/SAVP)")
    elif srtp.mode == "required":
        raise NotAcceptable("media.srtp is required and the offer is plain RTP/AVP")
    chosen = next(
        (
            (spec, offered)
            for spec in map(codec_spec, codecs)
            for offered in audio.codecs
            if _is(offered, spec)
        ),
        None,
    )
    if chosen is None:
        offered_names = [c.encoding_name or str(c.payload_type) for c in audio.codecs]
        raise NotAcceptable(f"no common codec: offered {offered_names}, we support {codecs}")
    codec, offered = chosen
    dtmf_pt = next(
        (
            c.payload_type
            for c in audio.codecs
            if c.encoding_name.lower() == "telephone-event"
            and (c.clock_rate or 8000) == codec.clock_rate
        ),
        None,
    )
    ptime = 20
    with contextlib.suppress(ValueError, IndexError):
        ptime = int(audio.attributes.get("ptime", ["20"])[0])
    if ptime not in (10, 20, 30, 40):
        ptime = 20
    fitting = getattr(codec, "ptime", None)  # Opus frames 10, 20, 40 or 60 ms, >= minptime
    if fitting is not None:
        ptime = fitting(ptime, offered.fmtp)
    remote = _remote(offer)
    if remote is not None and remote[0] in ("0.0.0.0", "::"):
        remote = None
    # The peer's direction says what IT does: it only sends (sendonly) or nothing (inactive).
    send = audio.direction in ("sendrecv", "recvonly")
    return MediaPlan(
        codec, offered.payload_type, remote, dtmf_pt, ptime, send, remote_crypto,
        codec_fmtp=offered.fmtp[:512] if offered.fmtp else None,
    )  # fmt: skip


def _is(offered: Codec, spec: CodecSpec) -> bool:
    """The offered format is this codec: its name, its RTP clock (0: a static type without
    rtpmap, whose clock RFC 3551 fixes) and, for Opus, two channels (RFC 7587 §7)."""
    if offered.encoding_name.upper() != spec.name.upper():
        return False
    if offered.clock_rate not in (0, spec.clock_rate):
        return False
    return spec.channels is None or offered.channels in (None, spec.channels)


def _media_lines(media: MediaDescription, plan: MediaPlan) -> None:
    """Our rtpmap, fmtp and ptime lines for the plan's codec and telephone-event, in place."""
    codec, pt, dtmf = plan.codec, plan.payload_type, plan.dtmf_payload_type
    ours = Codec(pt, codec.name, codec.clock_rate, codec.channels)
    line = codec.fmtp(pt, plan.codec_fmtp, plan.ptime_ms)
    ours.fmtp = line.split(" ", 1)[1] if line else None
    codecs = [ours]
    if dtmf is not None and str(dtmf) in media.formats:
        codecs.append(Codec(dtmf, "telephone-event", codec.clock_rate, None, "0-16"))
    media.codecs = codecs
    media.formats = [str(c.payload_type) for c in codecs]
    media.attributes["rtpmap"] = [
        codec.rtpmap(pt) if c is ours else f"{c.payload_type} telephone-event/{c.clock_rate}"
        for c in codecs
    ]
    fmtp = [f"{c.payload_type} {c.fmtp}" for c in codecs if c.fmtp]
    if fmtp:
        media.attributes["fmtp"] = fmtp
    else:
        media.attributes.pop("fmtp", None)
    media.attributes["ptime"] = [str(plan.ptime_ms)]


def srtp_session(plan: MediaPlan) -> SrtpSession | None:
    """The SRTP session a plan's keys make, None for plain RTP."""
    if plan.local_crypto is None or plan.remote_crypto is None:
        return None
    return SrtpSession(plan.local_crypto, plan.remote_crypto)


def srtp_keys(plan: MediaPlan | None) -> tuple[str, bytes, bytes] | None:
    """What the plan's SRTP sessions are made of (suite and both keys; the tags do not
    matter), None for plain RTP."""
    if plan is None or plan.local_crypto is None or plan.remote_crypto is None:
        return None
    return (plan.local_crypto.suite, plan.local_crypto.key, plan.remote_crypto.key)


def _same_key(a: CryptoAttribute | None, b: CryptoAttribute | None) -> bool:
    return a is not None and b is not None and (a.suite, a.key) == (b.suite, b.key)


def _crypto(lines: list[str], srtp: SrtpPolicy) -> CryptoAttribute:
    """The offer's a=crypto line we take: the first of our suites that it offers."""
    if srtp.mode == "off":
        raise NotAcceptable("the offer is RTP/SAVP (SRTP) and media.srtp is off")
    if not srtp.keys_allowed:
        raise NotAcceptable(
            "SRTP keys offered over unencrypted signalling (not TLS): refused, see "
            "media.srtp_over_insecure_signalling"
        )
    offered: list[CryptoAttribute] = []
    for line in lines[:16]:
        try:
            attr = parse_crypto(line)
        except BadCrypto as exc:
            raise NotAcceptable(f"a=crypto: {exc}") from None
        if attr is not None:
            offered.append(attr)
    ours = [name for name in srtp.suites if name in available_suites()]
    for name in ours:
        for attr in offered:
            if attr.suite == name:
                return attr
    # Suite names only (base64 has no "_"): never a key, even one put in the wrong place.
    words = (line.split()[1] for line in lines[:16] if len(line.split()) > 1)
    names = sorted({w for w in words if _SUITE_NAME.fullmatch(w)})
    raise NotAcceptable(f"no common SRTP crypto suite: offered {names}, we support {ours}")


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
    """Our answer (the offer's proto mirrored); an SRTP plan adds our a=crypto line."""
    answer, _ = negotiate_sdp(
        offer,
        local_ip=local_ip,
        rtp_port=rtp_port,
        supported_codecs=[plan.payload_type],
        dtmf_payload_type=plan.dtmf_payload_type if plan.dtmf_payload_type is not None else 0,
        ptime=plan.ptime_ms,
    )
    if answer.audio is not None:
        _media_lines(answer.audio, plan)
    if plan.local_crypto is not None and answer.audio is not None:
        answer.audio.attributes["crypto"] = [plan.local_crypto.value()]
    return answer


DTMF_PT = 101  # telephone-event at 8000 Hz in our own offers (102, 103...: other clocks)
DYNAMIC_PT = 111  # a codec without a static payload type (Opus) in our own offers


def offer_plans(codecs: list[str]) -> list[MediaPlan]:
    """Every configured codec as our offer names it, in `media.codecs` order (RFC 3264 §5.1:
    the answerer picks among them): its static payload type or a dynamic one from 111, and
    telephone-event on its RTP clock (101 at 8000 Hz, 102 at 48000 Hz beside Opus)."""
    plans: list[MediaPlan] = []
    dtmf_pts: dict[int, int] = {8000: DTMF_PT}
    dynamic = DYNAMIC_PT
    for name in codecs[:8]:
        spec = codec_spec(name)
        if any(plan.codec is spec for plan in plans):
            continue
        pt = spec.payload_type
        if pt is None:
            pt, dynamic = dynamic, dynamic + 1
        dtmf = dtmf_pts.setdefault(spec.clock_rate, DTMF_PT + len(dtmf_pts))
        plans.append(MediaPlan(spec, pt, None, dtmf, 20))
    if not plans:
        raise NotAcceptable("media.codecs names no codec to offer")
    return plans


def offers_several(codecs: list[str]) -> bool:
    """Whether our offer leaves the codec to the answer (so the call's audio format must fit
    any of them)."""
    return len(offer_plans(codecs)) > 1


def _offer_lines(media: MediaDescription, plans: list[MediaPlan]) -> None:
    """Our offer's formats, rtpmap and fmtp lines: every codec, then telephone-event once per
    clock rate they need (RFC 4733 §2.1), in place."""
    codecs: list[Codec] = []
    rtpmap: list[str] = []
    for plan in plans:
        codec = plan.codec
        ours = Codec(plan.payload_type, codec.name, codec.clock_rate, codec.channels)
        line = codec.fmtp(plan.payload_type, plan.codec_fmtp, plan.ptime_ms)
        ours.fmtp = line.split(" ", 1)[1] if line else None
        codecs.append(ours)
        rtpmap.append(codec.rtpmap(plan.payload_type))
    events = {plan.dtmf_payload_type: plan.codec.clock_rate for plan in plans}
    for pt, clock in sorted((pt, clock) for pt, clock in events.items() if pt is not None):
        codecs.append(Codec(pt, "telephone-event", clock, None, "0-16"))
        rtpmap.append(f"{pt} telephone-event/{clock}")
    media.codecs = codecs
    media.formats = [str(c.payload_type) for c in codecs]
    media.attributes["rtpmap"] = rtpmap
    fmtp = [f"{c.payload_type} {c.fmtp}" for c in codecs if c.fmtp]
    if fmtp:
        media.attributes["fmtp"] = fmtp
    else:
        media.attributes.pop("fmtp", None)
    media.attributes["ptime"] = [str(plans[0].ptime_ms)]


def _answered_order(answer: SdpMessage, offered: list[MediaPlan]) -> list[str]:
    """The codecs we offered, in the order of the answer's m= formats: the first is the one
    the call uses (RFC 3264 §6.1, §7)."""
    audio = answer.audio
    found = [
        p.codec.name for c in (audio.codecs if audio else []) for p in offered if _is(c, p.codec)
    ]
    return found or [offered[0].codec.name]


class SdpSession:
    """One call's side of the offer/answer exchange, for the whole dialog."""

    def __init__(
        self,
        codecs: list[str],
        local_ip: str,
        rtp_port: int = 0,
        *,
        allow_to: Door | None = None,
        srtp: SrtpPolicy = PLAIN,
    ) -> None:
        self.codecs = codecs
        self.srtp = srtp
        # Where our RTP may go (media.allow_to); None: anywhere.
        self.allow_to = allow_to
        self.local_ip = local_ip
        self.rtp_port = rtp_port  # set once the RTP socket is bound
        self.plan: MediaPlan | None = None  # what is agreed and in force
        self.local: SdpMessage | None = None  # the last SDP we sent
        self._offered: list[MediaPlan] | None = None  # our offer, waiting for its answer
        self._last_offer: MediaPlan | None = None
        self._offer_crypto: list[CryptoAttribute] = []  # the a=crypto lines of our offer
        self._id = str(secrets.randbelow(2**31))
        self._version = 0

    def first_plan(self, offer: SdpMessage | None) -> MediaPlan:
        """The media of a new call: from its offer, or what our own offer will propose."""
        if offer is not None:  # (our key is made with the answer, see answer())
            return self._allowed(plan_media(offer, self.codecs, self.srtp))
        return offer_plans(self.codecs)[0]

    def answer(self, offer: SdpMessage) -> tuple[MediaPlan, SdpMessage]:
        """Answer an offer; within a call the codec cannot change (its bridge is built)."""
        codecs = [self.plan.codec.name] if self.plan else self.codecs
        plan = self._keyed(self._allowed(plan_media(offer, codecs, self.srtp)))
        if self.plan is not None and plan.payload_type != self.plan.payload_type:
            # Opus's type is dynamic: the call's RTP stream is built on the one agreed.
            raise NotAcceptable(
                f"a re-INVITE cannot move the codec to payload type {plan.payload_type}"
            )
        answer = build_answer(offer, plan, self.local_ip, self.rtp_port)
        self.plan = plan
        return plan, self._stamp(answer)

    def offer(self) -> SdpMessage:
        """Our offer: every configured codec before a codec is agreed (an outbound INVITE,
        the 200 OK to an INVITE without SDP), the one in use within a call (a re-INVITE
        without SDP)."""
        # The same offer each time, so an offerless session refresh changes nothing (§8).
        if self.plan is None:
            plans = offer_plans(self.codecs)
        else:
            plans = [self._last_offer or self.plan]
            self._last_offer = plans[0]
        self._offered = plans
        base = plans[0]
        sdp = build_sdp(
            self.local_ip,
            self.rtp_port,
            base.payload_type,
            base.codec.name,
            sample_rate=base.codec.clock_rate,
            dtmf_payload_type=base.dtmf_payload_type or 0,
            ptime=base.ptime_ms,
        )
        if sdp.audio is not None:
            _offer_lines(sdp.audio, plans)
        crypto = self._offer_keys()
        if crypto and sdp.audio is not None:
            sdp.audio.proto = "RTP/SAVP"
            sdp.audio.attributes["crypto"] = [attr.value() for attr in crypto]
        return self._stamp(sdp)

    def _offer_keys(self) -> list[CryptoAttribute]:
        """The a=crypto lines of our offer: the key in force within an SRTP call; one key per
        suite of ours when media.srtp is required (we never offer SRTP as optional: SDES has
        no way to say "either"); none otherwise."""
        if self.plan is not None:
            local = self.plan.local_crypto
            self._offer_crypto = [local] if local is not None else []
        elif not self._offer_crypto and self.srtp.mode == "required":
            if not self.srtp.keys_allowed:
                raise NotAcceptable(
                    "media.srtp is required, and SRTP keys may not travel over unencrypted "
                    "signalling (not TLS): see media.srtp_over_insecure_signalling"
                )
            suites = [name for name in self.srtp.suites if name in available_suites()]
            self._offer_crypto = [
                CryptoAttribute.generate(tag, name) for tag, name in enumerate(suites, 1)
            ]
        return self._offer_crypto

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
        names = _answered_order(answer, offered)
        plan = self._allowed(plan_media(answer, names, self.srtp))
        ours = next(p for p in offered if p.codec is plan.codec)
        if plan.payload_type != ours.payload_type:  # our stream is built on the offered one
            raise NotAcceptable(f"the answer changed payload type {ours.payload_type}")
        self._last_offer = ours
        remote = plan.remote_crypto
        if (remote is None) != (not self._offer_crypto):
            raise NotAcceptable("the answer does not match our offer's RTP/SAVP or RTP/AVP")
        if remote is not None:
            local = next(
                (a for a in self._offer_crypto if (a.tag, a.suite) == (remote.tag, remote.suite)),
                None,
            )
            if local is None:
                raise NotAcceptable(f"the answer's a=crypto tag {remote.tag} is not one we offered")
            plan = dataclasses.replace(plan, local_crypto=local)
        self.plan = plan
        return plan

    def _keyed(self, plan: MediaPlan) -> MediaPlan:
        """Our key for an SRTP plan: the one in force while the peer keeps its key (a
        session refresh changes nothing), a new one when the peer re-keys (RFC 4568 §7.1.4:
        new keys, new SRTP sessions both ways). SRTP cannot be turned on or off mid-call: a
        re-INVITE that tries is refused (no downgrade to plain RTP)."""
        current = self.plan
        if current is not None and (current.remote_crypto is None) != (plan.remote_crypto is None):
            raise NotAcceptable("a re-INVITE cannot turn SRTP on or off within a call")
        remote = plan.remote_crypto
        if remote is None:
            return plan
        kept = current.remote_crypto if current is not None else None
        if current is not None and current.local_crypto is not None and _same_key(kept, remote):
            # The same key under another tag is the same key: a new session for it would
            # open a fresh replay window to packets already heard.
            local = dataclasses.replace(current.local_crypto, tag=remote.tag)
        else:
            local = CryptoAttribute.generate(remote.tag, remote.suite)
        return dataclasses.replace(plan, local_crypto=local)

    def refresh_answered(self, answer: SdpMessage) -> MediaPlan:
        """The answer to a session refresh that repeated our SDP: the codec in use stays,
        the peer's address and direction are taken (NotAcceptable if it breaks the call)."""
        current = self.plan
        if current is None:
            raise NotAcceptable("no media agreed yet")
        plan = self._allowed(plan_media(answer, [current.codec.name], self.srtp))
        if (plan.remote_crypto is None) != (current.remote_crypto is None):
            raise NotAcceptable("the answer to our refresh turned SRTP on or off")
        if current.local_crypto is not None:
            # Our SDP was repeated, our key with it: the outgoing SRTP session stays.
            plan = dataclasses.replace(plan, local_crypto=current.local_crypto)
        self.plan = plan
        return plan

    def direction_offer(self, direction: str) -> SdpMessage:
        """Our last SDP with the audio direction changed, as an offer in our own re-INVITE:
        sendonly puts the caller on hold, sendrecv takes them off (RFC 3264 §8.4); the o=
        version moves since the SDP changed (§8)."""
        if self.local is None or self.local.audio is None:
            raise NotAcceptable("no SDP of ours to change yet")
        sdp = copy.deepcopy(self.local)
        assert sdp.audio is not None
        for name in ("sendrecv", "sendonly", "recvonly", "inactive"):
            sdp.audio.attributes.pop(name, None)
        sdp.audio.attributes[direction] = []
        return self._stamp(sdp)

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
