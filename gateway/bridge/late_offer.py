"""An INVITE without SDP (late offer, RFC 3261 §13.2.1): our offer goes in the 200 OK and
names every codec of ``media.codecs``; the caller's answer comes in the ACK and picks one.

So the codec is known only at the ACK, and the RTP stream and the bridge, built on the codec,
wait for it: the RTP port is bound first (our offer names it), the Realtime session opens
(PCM16 when several codecs are offered: it must fit any answer), the 200 OK goes out, and
the ACK's answer builds the stream. An ACK that never comes ends the call at timer H
(``ack_timeout``), one whose answer we cannot use with ``bad_sdp_answer`` (calls.py).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from ..media.stream import NoPortAvailable, RtpStream, bind_rtp_socket
from ..realtime.link import RealtimeLink
from ..refusals import RETRY_AFTER_S, SetupFailed
from ..routing import Selection
from ..sip.leg import CallLeg
from ..sip.sdp import MediaPlan, NotAcceptable, SdpSession, srtp_session


async def late_offer_media(
    setup: Any,
    stack: contextlib.AsyncExitStack,
    sdp: SdpSession,
    plan: MediaPlan,
    route: Selection,
) -> tuple[RealtimeLink, RtpStream, MediaPlan]:
    """The session, the 200 OK with our offer, then the stream on the codec the ACK's answer
    chose; each teardown registered at once. `setup`: the call's CallSetup."""
    services, call = setup.services, setup.call
    try:
        sock, port = bind_rtp_socket(services.ports, services.cfg.sip.bind)
    except NoPortAvailable as exc:
        raise SetupFailed("no_rtp_port", str(exc), retry_after=RETRY_AFTER_S) from exc

    def unbind() -> None:  # the socket no stream took (the call ended before the ACK)
        if setup.stream is None:
            sock.close()
            services.ports.release(port)

    stack.callback(unbind)
    sdp.rtp_port = port
    session = await setup._connect(stack, route, plan)
    stack.callback(setup._bye)
    try:
        offer = sdp.offer()
    except NotAcceptable as exc:  # media.srtp required, and no TLS to carry the keys
        raise SetupFailed("not_acceptable", str(exc), level="warning") from exc
    leg = call.leg = CallLeg(call.sip, sdp, None, setup.log)
    call.sip.accept(offer)
    # Bounded by the UAS's timer H: no ACK ends the call (ack_timeout), cancelling us.
    plan = await leg.answered
    stream = setup.stream = stream_on(services, sock, port, plan)
    stack.callback(setup._close_stream, stream)
    leg.stream = stream
    leg.apply(plan, None)
    setup.record.codec = plan.codec.name
    return session, stream, plan


def stream_on(services: Any, sock: socket.socket, port: int, plan: MediaPlan) -> RtpStream:
    """The call's RTP stream on a socket bound before the codec was known (we offered: the
    answer chose it)."""
    stream = new_stream(services.cfg.media, plan, srtp_session(plan))
    stream.attach(sock)
    stream.port = port
    return stream


def new_stream(media: Any, plan: MediaPlan, srtp: Any = None) -> RtpStream:
    """The RTP stream a plan describes (``media``: the config's media section), its coder
    opened for this call (G.722, Opus keep state), before it has a socket."""
    return RtpStream(
        plan.codec.open(plan.codec_fmtp),
        plan.payload_type,
        plan.remote,
        _drop,
        plan.ptime_ms,
        dtmf_payload_type=plan.dtmf_payload_type,
        strict=media.strict_rtp,
        learn_packets=media.rtp_learn_packets,
        srtp=srtp,
    )


def _drop(payload: bytes) -> None:
    """RTP heard before the bridge exists."""
