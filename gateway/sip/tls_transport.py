"""SIP over TLS (RFC 3261 §26.3.1): the TCP listener with a handshake after admission, mutual
TLS (`tls.py` holds the contexts and the name checks), and connections of our own, verified:
to a registrar, or to a peer whose connection is gone when we send it a request.
"""

from __future__ import annotations

import asyncio
import ssl

import structlog
from aiosipua import SipRequest

from .door import Door
from .tcp import MAX_HEADER_BYTES, TcpLimits, TcpTransport
from .tls import name_refusal, reconnect_target
from .transport import Message, Source, source_text

log = structlog.get_logger("gateway.sip")


class TlsTransport(TcpTransport):
    """SIP over TLS (RFC 3261 §26.3.1): the TCP listener, its ACL, limits and timeouts, with a
    TLS handshake after admission. The handshake is ours (`StreamWriter.start_tls`) rather than
    `start_server`'s, so that a connection still in its handshake counts against the limits and
    a source the ACL refuses costs no handshake. `context` is read at each accept: a reload
    replaces it for new connections, and those open keep the one they were made with."""

    name = "TLS"
    reliable = True
    contact_transport = "tls"

    def __init__(
        self,
        local_addr: Source,
        context: ssl.SSLContext,
        door: Door | None = None,
        limits: TcpLimits | None = None,
        *,
        client: ssl.SSLContext | None = None,
        allowed_names: tuple[str, ...] = (),
        handshake_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(local_addr, door, limits)
        self.context = context
        self.client = client  # for connections we open; None = we open none
        self.allowed_names = allowed_names
        self.handshake_timeout_s = handshake_timeout_s

    def connected(self, addr: Source) -> bool:
        return (str(addr[0]), addr[1]) in self._connections

    def send_reconnecting(self, message: Message, addr: Source, remote_target: str) -> None:
        """An in-dialog request of ours: over the dialog's connection when it is open, else
        over a new verified one to the peer (`tls.reconnect_target`: its IP, its Contact's
        port and name, the certificate checked against that name, SNI)."""
        if self.connected(addr) or self.client is None:
            self.send(message, addr)
            return
        task = asyncio.get_running_loop().create_task(
            self._connect_and_send(bytes(message), addr, remote_target)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_and_send(self, data: bytes, addr: Source, remote_target: str) -> None:
        try:
            (ip, port), name = reconnect_target(remote_target, str(addr[0]))
        except ValueError as exc:
            self._tls_refused("tls_connect_failed", addr, str(exc))
            return
        target = (ip, port)
        if self.connected(target):  # the peer's listening port is already connected
            self.send_to(data, target)
            return
        await self._connect(target, name, data)

    async def open(self, addr: Source, name: str) -> str | None:
        """A connection to `addr` (a registrar), verified against `name`, kept open and
        served (the calls it sends come over it): None once it is up, else why not."""
        if self.connected(addr):
            return None
        if self.client is None:
            return "no client context"
        ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        task = asyncio.get_running_loop().create_task(
            self._connect(addr, name, b"", ready, keep=True)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        return ready.result() if ready.done() else "the connection attempt ended"

    async def _connect(
        self,
        target: Source,
        name: str,
        first: bytes,
        ready: asyncio.Future[str | None] | None = None,
        *,
        keep: bool = False,
    ) -> None:
        """Open a verified connection, send `first` and serve it until it closes; `ready`
        learns whether it came up (None) or why not."""

        def failed(why: str) -> None:
            self._tls_refused("tls_connect_failed", target, why)
            if ready is not None and not ready.done():
                ready.set_result(why)

        ip, port = target
        if self.client is None:
            failed("no client context")
            return
        if not self.door.admits(ip):
            failed("not in sip.allow_from")
            return
        if (
            len(self._connections) >= self.limits.max_connections
            or self._per_source[ip] >= self.limits.max_connections_per_source
        ):
            failed("connection limit")
            return
        try:
            async with asyncio.timeout(self.handshake_timeout_s * 2):
                reader, writer = await asyncio.open_connection(
                    ip,
                    port,
                    ssl=self.client,
                    server_hostname=name,
                    ssl_handshake_timeout=self.handshake_timeout_s,
                    limit=MAX_HEADER_BYTES,
                )
        except (TimeoutError, OSError, ssl.SSLError, ValueError) as exc:
            why = str(exc) or type(exc).__name__
            if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
                why = f"{exc.reason}: {exc.verify_message}"
            failed(why)
            return
        peer = writer.get_extra_info("peername")
        source = (str(peer[0]), int(peer[1])) if peer else target
        log.info("sip.tls_connected", peer=source_text(source), name=name[:100])
        if ready is not None and not ready.done():
            ready.set_result(None)
        await self._hold(reader, writer, source, accepted=False, first=first, keep=keep)

    async def _open(self, writer: asyncio.StreamWriter, source: Source) -> bool:
        context = self.context
        try:
            await writer.start_tls(context, ssl_handshake_timeout=self.handshake_timeout_s)
        except (TimeoutError, ConnectionAbortedError) as exc:
            # asyncio reports a handshake past its deadline as ConnectionAbortedError.
            timed_out = isinstance(exc, TimeoutError) or "longer than" in str(exc)
            reason = "tls_handshake_timeout" if timed_out else "tls_handshake_failed"
            self._tls_refused(reason, source, str(exc))
            return False
        except ssl.SSLError as exc:
            why = str(exc.reason or exc)
            if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
                why = f"{why}: {exc.verify_message}"  # e.g. unable to get local issuer
            reason = "tls_untrusted_peer" if _untrusted(exc) else "tls_handshake_failed"
            self._tls_refused(reason, source, why)
            return False
        except (ConnectionError, OSError, EOFError) as exc:
            self._tls_refused("tls_handshake_failed", source, str(exc) or type(exc).__name__)
            return False
        if context.verify_mode == ssl.CERT_REQUIRED and self.allowed_names:
            refusal = name_refusal(writer.get_extra_info("peercert"), self.allowed_names)
            if refusal is not None:
                self._tls_refused("tls_name_not_allowed", source, refusal)
                return False
        return True

    def send(self, message: Message, addr: Source) -> None:
        """A request of ours; aiosipua's REGISTER names UDP in its Via whatever carries it
        (and the Contact says transport=tls: Listener.send)."""
        if isinstance(message, SipRequest):
            vias = message.headers.get("via")
            if vias and vias[0].upper().startswith("SIP/2.0/UDP "):
                message.headers.remove("via")
                for index, via in enumerate(vias):
                    message.headers.append("Via", "SIP/2.0/TLS" + via[11:] if index == 0 else via)
        super().send(message, addr)

    def _tls_refused(self, reason: str, source: Source, why: str) -> None:
        """A connection closed before SIP: counted, and logged (rate-limited) with why."""
        self.drops[reason] += 1
        self.on_drop(reason)
        if self._logs.allow(reason, source[0]):
            log.warning(
                "sip.tls_refused", reason=reason, source=source_text(source), error=why[:200]
            )


def _untrusted(exc: ssl.SSLError) -> bool:
    text = f"{exc.reason} {exc}".upper()
    return any(
        key in text
        for key in ("CERTIFICATE_VERIFY_FAILED", "PEER_DID_NOT_RETURN_A_CERTIFICATE",
                    "CERTIFICATE_REQUIRED", "UNKNOWN_CA")
    )  # fmt: skip
