"""Requests the gateway sends inside a call: our BYE, our REFER (RFC 3515) and our INFO (keys).

The UAS answers requests; these are the other direction, the gateway acting as the UAC of
one request in the caller's dialog. Each is tracked by its Via branch until its final
response (the UAS hands every response here first), resent over UDP on the timer E
schedule, and sent where the call's packets come from: over TLS, a new verified connection
when the call's is gone, to the nearest proxy of the route set or else to the Contact.
Session refreshes, the third kind, have their own module (refresh.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiosipua import IncomingCall, SipRequest, SipResponse
from aiosipua.dialog import DialogState
from aiosipua.utils import format_addr

from .retransmit import resend
from .tls_transport import TlsTransport
from .transactions import SipTimers
from .transport import Listener
from .validate import first_route

log = structlog.get_logger("gateway.sip")


class OutgoingRequests:
    """Our BYEs and REFERs in flight, by Via branch, for one UAS."""

    def __init__(self, transport: Listener, timers: SipTimers, user_agent: str | None) -> None:
        self.transport = transport
        self.timers = timers
        self.user_agent = user_agent
        self._byes: dict[str, asyncio.Task[None]] = {}  # our BYEs by branch, until answered
        # Our REFERs by branch until their final response; transfer progress by Call-ID.
        self._refers: dict[str, asyncio.Future[SipResponse]] = {}
        self._transfers: dict[str, asyncio.Queue[tuple[int, str]]] = {}

    def close(self) -> None:
        for task in self._byes.values():
            task.cancel()
        self._byes.clear()

    def on_response(self, response: SipResponse, branch: str) -> bool:
        """A response to our BYE or REFER (True: it was ours, and is handled)."""
        task = self._byes.pop(branch, None)
        if task is not None:
            task.cancel()
            return True
        refer = self._refers.get(branch)
        if refer is not None:
            if response.status_code >= 200 and not refer.done():
                refer.set_result(response)
            return True
        return False

    def send_bye(self, call: IncomingCall) -> None:
        """End a confirmed call; over UDP the BYE is resent (timer E) until answered."""
        if call.dialog.state is not DialogState.CONFIRMED:
            return
        bye = self._request(call, "BYE")
        call.dialog.terminate()
        destination = call.source_addr
        self.send_in_dialog(call, bye)
        branch = bye.via[0].branch or ""
        if not self.transport.reliable and branch:
            self._byes[branch] = asyncio.get_running_loop().create_task(
                self._resend_bye(branch, lambda: self.transport.send(bye, destination))
            )

    def send_in_dialog(self, call: IncomingCall, request: SipRequest) -> None:
        """Over the call's connection; over TLS, a new verified one when it is gone: to the
        first proxy of the route set (Kamailio's Record-Route) when there is one, else to the
        caller's Contact (RFC 3261 §12.2.1.1). Either way to the IP the call came from
        (`tls.reconnect_target`): the URI chooses the port and the name checked, no more."""
        transport = self.transport
        if isinstance(transport, TlsTransport):
            target = first_route(call.dialog.route_set) or call.dialog.remote_target
            transport.send_reconnecting(request, call.source_addr, target)
        else:
            transport.send(request, call.source_addr)

    async def transfer(
        self,
        call: IncomingCall,
        target: str,
        timeout_s: float = 30.0,
        *,
        refer_to: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[bool, str]:
        """Blind transfer (RFC 3515): REFER the caller to `target`, wait for the outcome.

        True once the caller's side reports the new call answered (NOTIFY sipfrag 2xx);
        False, with the reason, when the REFER is refused or the new call fails.
        `refer_to`: a Refer-To of its own (a warm transfer's, with Replaces); `headers`: the
        transfer's context (transfer_context.py, already sanitised).
        """
        if call.dialog.state is not DialogState.CONFIRMED:
            return False, "the call is not up"
        refer = self._request(
            call,
            "REFER",
            {
                **(headers or {}),
                "Refer-To": refer_to or f"<{target}>",
                "Referred-By": f"<{call.dialog.local_uri}>",
                "Contact": f"<sip:{format_addr(*call._signaling_addr())}>",
            },
        )
        branch = refer.via[0].branch or ""
        answered: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._refers[branch] = answered
        progress = self._transfers[call.call_id] = asyncio.Queue()
        destination = call.source_addr
        self.send_in_dialog(call, refer)
        resending = (
            None
            if self.transport.reliable
            else asyncio.ensure_future(
                resend(self.timers, lambda: self.transport.send(refer, destination))
            )
        )
        try:
            async with asyncio.timeout(timeout_s):
                response = await answered
                if resending is not None:
                    resending.cancel()
                if response.status_code >= 300:
                    return False, f"REFER refused: {response.status_code} {response.reason_phrase}"
                while True:
                    status, reason = await progress.get()
                    if status >= 200:
                        return status < 300, f"{status} {reason}".strip()
        except TimeoutError:
            return False, f"no transfer outcome within {timeout_s:g} s"
        finally:
            if resending is not None:
                resending.cancel()
            self._refers.pop(branch, None)
            self._transfers.pop(call.call_id, None)

    async def send_info(
        self, call: IncomingCall, body: str, content_type: str, timeout_s: float = 8.0
    ) -> int | None:
        """An INFO in the call (keys as application/dtmf-relay); its final status, None when
        none came in time. Over UDP it is resent (timer E) until answered."""
        if call.dialog.state is not DialogState.CONFIRMED:
            return None
        info = self._request(call, "INFO")
        info.text = body
        info.headers.set_single("Content-Type", content_type)
        branch = info.via[0].branch or ""
        answered: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._refers[branch] = answered  # any request of ours waiting for its final answer
        destination = call.source_addr
        self.send_in_dialog(call, info)
        resending = (
            None
            if self.transport.reliable
            else asyncio.ensure_future(
                resend(self.timers, lambda: self.transport.send(info, destination))
            )
        )
        try:
            async with asyncio.timeout(timeout_s):
                return (await answered).status_code
        except TimeoutError:
            return None
        finally:
            if resending is not None:
                resending.cancel()
            self._refers.pop(branch, None)

    def transfer_progress(self, call_id: str, status: int, reason: str) -> None:
        """A NOTIFY (Event: refer) told how the caller's new call is going."""
        log.info("sip.transfer_progress", sip_call_id=call_id, status=status, reason=reason)
        queue = self._transfers.get(call_id)
        if queue is not None:
            queue.put_nowait((status, reason))

    def _request(
        self, call: IncomingCall, method: str, headers: dict[str, str] | None = None
    ) -> SipRequest:
        host, port = call._signaling_addr()
        request = call.dialog.create_request(
            method, via_host=host, via_port=port, via_transport=self.transport.name
        )
        for name, value in (headers or {}).items():
            request.headers.set_single(name, value)
        if self.user_agent:
            request.headers.set_single("User-Agent", self.user_agent)
        return request

    async def _resend_bye(self, branch: str, send: Callable[[], None]) -> None:
        await resend(self.timers, send)
        self._byes.pop(branch, None)
        log.info("sip.bye_timeout", branch=branch)
