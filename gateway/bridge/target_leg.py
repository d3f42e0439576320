"""A warm transfer's second leg: our INVITE to the human, its RTP, and its end.

It reuses what outbound calls use (sip/invite_client.py: timers A/B, CANCEL, digest, the
ACK of errors; bridge/outbound.py's trunk lookup): through sip.outbound's trunk when one is
configured, else straight to the target URI's host (an IP literal, or a name looked up
without blocking). The leg offers only the caller's codec, so the model's audio and the
caller's can pass to it without another conversion. Its dialog sits in the UAS's table once
answered, and the leg is the UAS's ``SideLeg`` for it: the human's BYE (or a session timer
that ran out) reaches ``on_bye``, and their PBX's re-INVITEs (a refresh, a hold, a move) are
answered as the caller's are (sip/leg.py). It asks for session timers as outbound calls do.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from collections.abc import Callable
from typing import Any

from aiosipua import SdpMessage, SipRequest
from aiosipua.auth import SipDigestAuth
from aiosipua.dialog import DialogState

from ..config import outbound_password
from ..media.stream import FrameSource, RtpStream, bind_rtp_socket
from ..refusals import PHRASES
from ..sip.addresses import ip_literal
from ..sip.answer import respond
from ..sip.invite_client import Answer, InviteClient, PlacedCall
from ..sip.leg import CallLeg
from ..sip.sdp import NotAcceptable, SdpSession, SrtpPolicy, srtp_session
from .trunk import RESOLVE_TIMEOUT_S, placed_call, reach_trunk

_HOSTPORT = re.compile(r"sips?:(?:[^@]*@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?")


class LegFailed(Exception):
    """The leg could not be tried (no address, no port): a local failure."""


async def target_address(target: str, outbound: Any, transport: Any) -> tuple[str, int]:
    """Where the INVITE goes: the trunk, or the target URI's host and port."""
    if outbound is not None:
        try:
            return await reach_trunk(outbound, transport)
        except Exception as exc:
            raise LegFailed(getattr(exc, "detail", str(exc))) from None
    found = _HOSTPORT.match(target)
    if found is None:
        raise LegFailed(f"no host in {target}")
    host, port = found.group(1).strip("[]"), int(found.group(2) or 5060)
    if not 0 < port < 65536:
        raise LegFailed(f"bad port in {target}")
    ip = ip_literal(host)
    if ip is not None:
        return ip, port
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
    except (OSError, TimeoutError):
        raise LegFailed(f"cannot resolve {host}") from None
    if not infos:
        raise LegFailed(f"{host} has no address")
    return str(infos[0][4][0]), port


class TargetLeg:
    """One INVITE to the human, and the media once they answer."""

    def __init__(self, call: Any, services: Any, caller_codec: str, log: Any) -> None:
        """`call`: the caller's ActiveCall (its UAS carries this leg too)."""
        self.call = call
        self.services = services
        self.caller_codec = caller_codec
        self.log = log
        self.uas = call.uas
        self.client: InviteClient | None = None
        self.sip: PlacedCall | None = None
        self.sdp: SdpSession | None = None
        self.leg: CallLeg | None = None  # once the media is up: the human's re-INVITEs
        self.stream: RtpStream | None = None
        self.on_bye: Callable[[], None] = lambda: None
        self._sock: socket.socket | None = None
        self._port = 0
        self._pacer: asyncio.Task[None] | None = None

    async def ring(self, target: str, headers: dict[str, str], ring_timeout_s: float) -> Answer:
        """INVITE the target; its final answer (a 2xx: the media is up). CANCEL at the ring
        timeout (then the 487's answer, marked cancelled by `client.cancelled`)."""
        cfg = self.services.cfg
        destination = await target_address(target, cfg.sip.outbound, self.uas.transport)
        local_ip = self.services.local_ip(destination[0])
        try:
            self._sock, self._port = bind_rtp_socket(self.services.ports, cfg.sip.bind)
        except Exception as exc:
            raise LegFailed(str(exc)) from None
        sdp = self.sdp = self._sdp(local_ip)
        try:
            offer = sdp.offer()
        except NotAcceptable as exc:
            raise LegFailed(str(exc)) from None
        uri = target if cfg.sip.outbound is None else _via_trunk(target, cfg.sip.outbound.domain)
        sip = self.sip = placed_call(
            f"{secrets.token_hex(16)}@{local_ip}",
            f"sip:{_user(self.call.sip.caller) or 'gateway'}@{local_ip}",
            uri,
            destination,
            self.uas,
        )
        sip.advertised_addr = (local_ip, self.uas.transport.local_addr[1])
        client = self.client = InviteClient(
            self.uas.transport,
            self.uas.timers,
            from_uri=sip.dialog.local_uri,
            to_uri=uri,
            destination=destination,
            contact=sip.advertised_addr,
            offer=offer,
            auth=self._auth(),
            user_agent=cfg.sip.user_agent or None,
            dialog=sip.dialog,
            headers=headers,
            session_timers=self.uas.session_policy,
        )
        client.on_answered = self._dialog_up
        self.uas.invite_clients[sip.call_id] = client
        client.send()
        self.log.info("transfer.dialing", target=target, to=f"{destination[0]}:{destination[1]}")
        try:
            answer = await asyncio.wait_for(asyncio.shield(client.final), ring_timeout_s)
        except TimeoutError:
            client.cancel()
            answer = await client.final
        if 200 <= answer.status < 300:
            try:
                self._media(sdp.accept_answer(answer.sdp))
            except NotAcceptable as exc:
                self.log.warning("transfer.target_sdp_refused", reason=str(exc))
                self.hang_up()
                return Answer(488, f"the target's answer is unusable: {exc}", local=True)
        return answer

    def _sdp(self, local_ip: str) -> SdpSession:
        """The leg's SDP: the caller's codec only; SRTP as media.srtp says, as for the
        caller's own leg (required: RTP/SAVP, failing where its keys may not travel over this
        signalling)."""
        srtp = SrtpPolicy.configured(self.services.cfg.media, self.uas.transport.name)
        sdp = SdpSession(
            [self.caller_codec], local_ip, allow_to=self.services.media_door, srtp=srtp
        )
        sdp.rtp_port = self._port
        return sdp

    def _auth(self) -> SipDigestAuth | None:
        outbound = self.services.cfg.sip.outbound
        password = outbound_password(self.services.cfg)
        if outbound is None or outbound.auth is None or not password:
            return None
        return SipDigestAuth(outbound.auth.username, password)

    def _dialog_up(self) -> None:
        """The 2xx is ACKed: the human's requests now reach the UAS, and us; the session
        timer its 2xx put in force runs."""
        sip, client = self.sip, self.client
        assert sip is not None and client is not None
        self.uas.side_legs[sip.call_id] = self
        self.uas.placed_call_up(sip, client)

    # --- the UAS's SideLeg --------------------------------------------------------------------

    def bye_in(self) -> None:
        self.log.info("transfer.target_bye")
        self.on_bye()

    def expired(self) -> None:
        """The human's side stopped refreshing: gone, as by a BYE (ours follows, hang_up)."""
        self.log.info("transfer.target_session_expired")
        self.on_bye()

    def reinvite(self) -> None:
        assert self.sip is not None
        if self.leg is None:  # the answer's media is not set up yet (§14.2: try again)
            respond(self.sip, 500, PHRASES[500], retry_after=1)
        else:
            self.leg.on_reinvite()

    def ack(self, request: SipRequest) -> None:
        """The ACK of our 200: the answer, when that 200 carried our offer; an unusable one
        ends the leg as a refusal would (the human gone)."""
        if self.leg is None:
            return
        try:
            self.leg.on_ack(request)
        except NotAcceptable as exc:
            self.log.warning("transfer.target_bad_answer", reason=str(exc))
            self.on_bye()

    def local_sdp(self) -> SdpMessage | None:
        return self.sdp.local if self.sdp is not None else None

    def refresh_answered(self, answer: SdpMessage) -> None:
        if self.leg is not None:
            self.leg.on_refresh_answer(answer)

    def _media(self, plan: Any) -> None:
        media = self.services.cfg.media
        stream = RtpStream(
            plan.codec.open(plan.codec_fmtp),
            plan.payload_type,
            plan.remote,
            lambda payload: None,
            plan.ptime_ms,
            dtmf_payload_type=plan.dtmf_payload_type,
            strict=media.strict_rtp,
            learn_packets=media.rtp_learn_packets,
        )
        stream.srtp = srtp_session(plan)
        assert self._sock is not None
        stream.attach(self._sock)
        stream.port = self._port
        self.stream = stream
        assert self.sip is not None and self.sdp is not None
        self.leg = CallLeg(self.sip, self.sdp, stream, self.log)

    def play(self, source: FrameSource) -> None:
        """The leg's pacer: one frame from `source` each ptime (the model, or the caller)."""
        assert self.stream is not None
        if self._pacer is None:
            self._pacer = asyncio.get_running_loop().create_task(self.stream.pace(source))
        else:
            self.stream.switch_source(source)

    @property
    def up(self) -> bool:
        return self.sip is not None and self.sip.dialog.state is DialogState.CONFIRMED

    def hang_up(self) -> None:
        """BYE once answered, CANCEL while ringing; the socket and port are let go."""
        sip, client = self.sip, self.client
        if client is not None and not client.final.done():
            client.cancel()
        if sip is not None:
            self.uas.side_legs.pop(sip.call_id, None)
            if sip.dialog.state is DialogState.CONFIRMED:
                self.uas.send_bye(sip)
            self.uas.forget(sip)
        if client is not None:
            key = client.call_id

            def forget(_: object = None) -> None:
                client.close()
                if self.uas.invite_clients.get(key) is client:
                    del self.uas.invite_clients[key]

            if client.final.done():
                forget()
            else:
                client.final.add_done_callback(forget)
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None
        if self.stream is not None:
            self.stream.close()
            self.services.ports.release(self._port)
            self.stream = None
        elif self._sock is not None:
            self._sock.close()
            self.services.ports.release(self._port)
        self._sock = None


def _user(uri: str) -> str:
    """The user part of a SIP URI (digits and the like only), for our From."""
    found = re.match(r"(?:.*<)?sips?:([A-Za-z0-9+*#._-]{1,64})@", uri or "")
    return found.group(1) if found else ""


def _via_trunk(target: str, domain: str) -> str:
    """Through a trunk the Request-URI keeps the target's user at the trunk's domain."""
    user = _user(target)
    return f"sip:{user}@{domain}" if user else target
