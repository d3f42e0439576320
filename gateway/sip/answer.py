"""The answers to an INVITE or re-INVITE, on aiosipua's IncomingCall.

`GatewayCall` is the call a new INVITE creates: its 1xx/2xx echo the Record-Route (so a
proxy stays in the dialog), its 2xx carries the negotiated session timer (RFC 4028 §9), and a
2xx to a re-INVITE re-arms that timer. `respond` and `reject` are how the rest of the gateway
answers a call; they live here, apart from the UAS, because the application needs them and
not the UAS's machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiosipua import IncomingCall, SipResponse
from aiosipua.dialog import DialogState
from aiosipua.sdp import SdpMessage, serialize_sdp
from aiosipua.utils import format_addr

from .session_timer import Negotiated, Refresher, allows
from .validate import retarget


@dataclass
class GatewayCall(IncomingCall):
    """An IncomingCall whose 2xx to an INVITE carries the negotiated session timer (RFC 4028
    §9), and whose 2xx to a re-INVITE re-arms it (the refresh took place)."""

    # The negotiation for the INVITE being answered, and the one in force.
    offered_timer: Negotiated | None = field(default=None, repr=False)
    timer: Negotiated | None = field(default=None, repr=False)
    timers_supported: bool = field(default=False, repr=False)
    on_refreshed: Callable[[GatewayCall], Any] | None = field(default=None, repr=False)
    role: ClassVar[Refresher] = "uas"  # ours in the INVITE that made the dialog

    def peer_allows(self, method: str) -> bool:
        """Whether the other side's Allow lists `method` (an absent Allow lists nothing)."""
        return allows(self.invite, method)

    def _send_response(
        self,
        status_code: int,
        reason: str,
        *,
        body: str = "",
        content_type: str = "",
        extra_headers: dict[str, str] | None = None,
    ) -> SipResponse | None:
        success = 200 <= status_code < 300 and self.invite.method == "INVITE"
        refresh = success and self.dialog.state is DialogState.CONFIRMED
        record_route = self.invite.headers.get("record-route")
        if 100 < status_code < 300 and record_route:
            # RFC 3261 §12.1.1: the caller builds its route set from these, so its ACK and
            # BYE come back through the proxies that record-routed (Kamailio), not around them.
            extra_headers = {**(extra_headers or {}), "Record-Route": ", ".join(record_route)}
        if success:
            extra_headers = dict(extra_headers or {})
            if self.timers_supported:
                extra_headers["Supported"] = "timer"
            if self.offered_timer is not None:
                extra_headers.update(self.offered_timer.headers())
        response = super()._send_response(
            status_code, reason, body=body, content_type=content_type, extra_headers=extra_headers
        )
        if success:
            self.timer = self.offered_timer
        if refresh:
            retarget(self.dialog, self.invite)  # a re-INVITE's Contact, once accepted (RFC 6141)
        if refresh and self.on_refreshed is not None:
            self.on_refreshed(self)
        return response


def respond(
    call: IncomingCall,
    status: int,
    reason: str,
    *,
    sdp: SdpMessage | None = None,
    retry_after: int | None = None,
    headers: Mapping[str, str | list[str]] | None = None,
) -> None:
    """A response to the call's current INVITE or re-INVITE; the dialog is left as it is.

    A header given a list of values is sent as one line per value, in that order: digest
    challenges must not be folded into one line (RFC 3261 §7.3.1, RFC 8760 §2.4).
    """
    extra = {name: v for name, v in (headers or {}).items() if isinstance(v, str)}
    repeated = [(n, v) for n, vs in (headers or {}).items() if not isinstance(vs, str) for v in vs]
    if retry_after is not None:
        extra["Retry-After"] = str(retry_after)
    if not repeated:
        call._send_response(
            status,
            reason,
            body=serialize_sdp(sdp) if sdp is not None else "",
            content_type="application/sdp" if sdp is not None else "",
            extra_headers=extra or None,
        )
        return
    # As IncomingCall._send_response builds it, which sets each extra header only once.
    contact = f"<sip:{format_addr(*call._signaling_addr())}>" if call.transport else None
    response = call.dialog.create_response(call.invite, status, reason, contact=contact)
    if sdp is not None:
        response.text = serialize_sdp(sdp)
        response.headers.set_single("Content-Type", "application/sdp")
    if call.user_agent:
        response.headers.set_single("User-Agent", call.user_agent)
    for name, value in extra.items():
        response.headers.set_single(name, value)
    for name, value in repeated:
        response.headers.append(name, value)
    if call.transport is not None:
        call.transport.send_reply(response)


def reject(
    call: IncomingCall,
    status: int,
    reason: str,
    *,
    retry_after: int | None = None,
    headers: Mapping[str, str | list[str]] | None = None,
) -> None:
    """A final error response to the initial INVITE, with Retry-After where a PBX should
    try again later; it is resent until ACKed (timer G)."""
    respond(call, status, reason, retry_after=retry_after, headers=headers)
    call.dialog.terminate()
