"""SIP over UDP, TCP and TLS: our own listeners around aiosipua's parser.

Why this layer is ours and not aiosipua's (README, "Dependencies"): its transports send a
response where the message's Via says (a forged ``received`` reflects our traffic at a third
party; a host name there is resolved synchronously on every send), an asyncio datagram
endpoint is closed for good by the first send that raises anything but OSError (one
``rport=70000`` took the SIP port off the network), and its TCP listener has no connection
limits or timeouts. Here:

- the source ACL (`door.py`) runs on the packet's address before the packet is parsed;
- every response goes to the packet's source (`addresses.stamp_via`), over TCP on the
  connection the request came in on (RFC 3261 §18.2.2);
- nothing a message says reaches ``sendto`` unchecked, and no send or receive error of any
  type closes a listener; a listener that stops all the same reports it (`on_dead`);
- TCP: connections limited in total and per source, an idle timeout (not while a call uses
  the connection), a deadline for each message once it has begun (slowloris), bounded
  header, body and send buffer sizes, and the ACL applied at accept.
- TLS: the TCP listener with a handshake after the ACL and the limits (a deadline on it),
  mutual TLS (`tls.py`), and connections of our own, verified, to a registrar or to a peer
  whose connection is gone when we send it a request.

Every packet dropped is counted by reason (`on_drop`), and logged at most once a minute per
source and reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiosipua import SipMessage, SipRequest, SipResponse

from .addresses import BadAddress, reply_address, sendable, stamp_via
from .door import Door, LogLimiter
from .tls import name_refusal, reconnect_target

log = structlog.get_logger("gateway.sip")

MAX_DATAGRAM = 65535
MAX_HEADER_BYTES = 64 * 1024  # a header section larger than this is not from a PBX
MAX_BODY_BYTES = 64 * 1024  # an SDP is a few hundred bytes
READS_PER_WAKEUP = 32  # UDP datagrams read per readable event before other work runs

Message = SipRequest | SipResponse
Source = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TcpLimits:
    max_connections: int = 1024
    max_connections_per_source: int = 64
    idle_timeout_s: float = 120.0
    message_timeout_s: float = 10.0
    max_send_buffer: int = 256 * 1024


def parse_datagram(data: bytes) -> tuple[Message, str | None] | None:
    """A SIP message and what is wrong with it that still allows an answer (or None), or None
    for a keep-alive (RFC 5626 §3.5.1 CRLFs). Raises ValueError when it cannot be read."""
    if not data.strip():
        return None
    try:
        message = SipMessage.parse(data)
    except (ValueError, IndexError, UnicodeError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    if isinstance(message, SipResponse):
        if not 100 <= message.status_code <= 699:
            raise ValueError(f"status code {message.status_code} out of range")
        return message, None
    version = data.lstrip().split(b"\n", 1)[0].strip().rsplit(b" ", 1)[-1]
    if version.upper() != b"SIP/2.0":
        raise ValueError(f"unsupported protocol version {version[:20]!r}")
    return message, _header_problem(data)


def _header_problem(data: bytes) -> str | None:
    """A header line without a colon: aiosipua skips it, RFC 3261 §7.3 makes it a bad request."""
    head = data.lstrip().split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.replace(b"\r\n", b"\n").split(b"\n")[1:]:
        if line and line[:1] not in b" \t" and b":" not in line:
            return "Header Line Without a Colon"
    return None


class Listener:
    """What the UAS and aiosipua's call objects need of a transport; subclasses move bytes."""

    name = "UDP"
    reliable = False

    def __init__(self, local_addr: Source, door: Door | None = None) -> None:
        self.local_addr = local_addr
        self.door = door or Door([], "respond")
        self.on_message: Callable[[Message, Source], None] | None = None
        self.on_reply: Callable[[SipResponse], None] | None = None
        # A request that may not be processed, and the answer it gets instead (the UAS builds
        # it; `send_to` sends it to the packet's source, outside any transaction).
        self.on_refused: Callable[[SipRequest, Source, int, str], bytes] | None = None
        self.on_drop: Callable[[str], None] = lambda reason: None
        self.on_dead: Callable[[str], None] = lambda reason: None
        self.drops: Counter[str] = Counter()
        self._logs = LogLimiter()
        self._stopping = False

    # --- in -------------------------------------------------------------------------------

    def _received(self, data: bytes, source: Source) -> bool:
        """One message's bytes: False when they could not be read at all (TCP hangs up)."""
        door = self.door
        if not door.admits(source[0]):
            self._drop("not_allowed", source, bytes=len(data))
            if door.respond:
                with contextlib.suppress(ValueError):
                    parsed = parse_datagram(data)
                    if parsed is not None and isinstance(parsed[0], SipRequest):
                        self._refuse(parsed[0], source, 403, "Forbidden", len(data))
            return True
        try:
            parsed = parse_datagram(data)
        except ValueError as exc:
            self._drop("unparseable", source, bytes=len(data), error=str(exc)[:200])
            return False
        if parsed is None:
            return True
        message, problem = parsed
        if isinstance(message, SipRequest):
            try:
                stamp_via(message, source)
            except BadAddress as exc:
                problem = str(exc)
                self._drop("bad_address", source, error=problem, method=message.method[:20])
                self._refuse(message, source, 400, "Bad Via")
                return True
            if problem is not None:
                self._drop("bad_header", source, error=problem, method=message.method[:20])
                self._refuse(message, source, 400, problem)
                return True
        if self.on_message is not None:
            try:
                self.on_message(message, source)
            except Exception:
                if self._logs.allow("handler_failed", source[0]):
                    log.exception("sip.handler_failed", source=_fmt(source))
        return True

    def _refuse(
        self,
        request: SipRequest,
        source: Source,
        status: int,
        reason: str,
        budget: int | None = None,
    ) -> None:
        """Answer a request that is not processed; a stranger's only when the answer is no
        larger than its request (`budget`): its source may be forged, and the gateway must not
        amplify what reaches a victim."""
        if request.method != "ACK" and request.headers.get("via") and self.on_refused:
            try:
                answer = self.on_refused(request, source, status, reason)
                if budget is not None and len(answer) > budget:
                    self._drop("answer_too_large", source, status=status)
                    return
                self.send_to(answer, source)
            except Exception:
                if self._logs.allow("handler_failed", source[0]):
                    log.exception("sip.handler_failed", source=_fmt(source))

    def _drop(self, reason: str, source: Source, **fields: Any) -> None:
        self.drops[reason] += 1
        self.on_drop(reason)
        if self._logs.allow(reason, source[0]):
            log.info("sip.dropped", reason=reason, source=_fmt(source), transport=self.name,
                     **fields)  # fmt: skip

    # --- out ------------------------------------------------------------------------------

    def send_reply(self, response: SipResponse) -> None:
        """A response, to where its request came from; `on_reply` sees it first."""
        if self.on_reply is not None:
            self.on_reply(response)
        self.resend(response)

    def resend(self, response: SipResponse) -> None:
        """A response again (a retransmission): not seen by `on_reply`."""
        try:
            destination = reply_address(response.headers.get("via"))
        except BadAddress as exc:
            self._drop("bad_address", ("-", 0), error=str(exc), status=response.status_code)
            return
        self.send_to(bytes(response), destination)

    def send(self, message: Message, addr: Source) -> None:
        """A request of ours (BYE, REFER, REGISTER) or a message to an explicit address."""
        self.send_to(bytes(message), addr)

    def send_to(self, data: bytes | Message, addr: Source) -> None:
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        raise NotImplementedError


class UdpTransport(Listener):
    name = "UDP"
    reliable = False

    def __init__(self, local_addr: Source, door: Door | None = None) -> None:
        super().__init__(local_addr, door)
        self._sock: socket.socket | None = None
        self._fd = -1  # kept: a socket closed under us reports -1, its reader stays registered
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        host, port = self.local_addr
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)

    async def stop(self) -> None:
        self._stopping = True
        sock, self._sock = self._sock, None
        self._forget_reader()
        if sock is not None:
            sock.close()

    def _forget_reader(self) -> None:
        if self._loop is not None and self._fd != -1:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._fd)
        self._fd = -1

    @property
    def alive(self) -> bool:
        return self._sock is not None and self._sock.fileno() != -1

    @property
    def port(self) -> int | None:
        return int(self._sock.getsockname()[1]) if self._sock is not None else None

    def _readable(self) -> None:
        sock = self._sock
        for _ in range(READS_PER_WAKEUP):
            if sock is None or sock.fileno() == -1:
                return
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue  # an ICMP error for something we sent earlier: not fatal
                self._die(f"receive failed: {exc.strerror or exc}")
                return
            try:
                self._received(data, (str(addr[0]), int(addr[1])))
            except Exception:  # a bug, never a reason to stop listening
                if self._logs.allow("handler_failed", str(addr[0])):
                    log.exception("sip.handler_failed", source=f"{addr[0]}:{addr[1]}")

    def _die(self, reason: str) -> None:
        if self._stopping:
            return
        log.error("sip.listener_failed", transport=self.name, reason=reason)
        self._forget_reader()
        self._sock = None
        self.on_dead(f"{self.name} listener: {reason}")

    def send_to(self, data: bytes | Message, addr: Source) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            destination = sendable(addr)
            payload = data if isinstance(data, bytes) else bytes(data)
            sock.sendto(payload, destination)
        except BadAddress as exc:
            self._drop("bad_address", ("-", 0), error=str(exc))
        except (OSError, OverflowError, ValueError, TypeError) as exc:
            # Full buffer, no route, ICMP error: the datagram is lost, the listener stays.
            self._drop("send_failed", (str(addr[0])[:64], 0), error=str(exc)[:200])


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    source: Source
    keep: bool = False  # ours to a registrar: never closed for idling


class TcpTransport(Listener):
    name = "TCP"
    reliable = True

    def __init__(
        self,
        local_addr: Source,
        door: Door | None = None,
        limits: TcpLimits | None = None,
    ) -> None:
        super().__init__(local_addr, door)
        self.limits = limits or TcpLimits()
        self._server: asyncio.Server | None = None
        self._connections: dict[Source, _Connection] = {}
        self._per_source: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        # True while a call in progress uses a connection: it is then never closed for idling.
        self.busy: Callable[[Source], bool] = lambda source: False

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept,
            host=self.local_addr[0],
            port=self.local_addr[1],
            limit=MAX_HEADER_BYTES,
        )

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            conn.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._connections.clear()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    @property
    def alive(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = (str(peer[0]), int(peer[1])) if peer else ("0.0.0.0", 0)
        host = source[0]
        refusal = None
        if not self.door.admits(host):
            refusal = "not_allowed"
        elif len(self._connections) >= self.limits.max_connections:
            refusal = "tcp_connection_limit"
        elif self._per_source[host] >= self.limits.max_connections_per_source:
            refusal = "tcp_source_limit"
        if refusal is not None:
            self._drop(refusal, source)
            writer.transport.abort()
            return
        await self._hold(reader, writer, source)

    async def _hold(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        source: Source,
        *,
        accepted: bool = True,
        first: bytes = b"",
        keep: bool = False,
    ) -> None:
        """A connection admitted, counted against the limits until it closes: one accepted
        (made ready by `_open`), or one we opened (its `first` message sent at once)."""
        host = source[0]
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = _Connection(writer, source, keep)
        self._connections[source] = conn
        self._per_source[host] += 1
        try:
            if not accepted:
                if first:
                    self._write(conn, first)
                await self._serve(reader, conn)
            elif await self._open(writer, source):
                await self._serve(reader, conn)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug: this connection ends, the listener goes on
            if self._logs.allow("handler_failed", host):
                log.exception("sip.handler_failed", source=_fmt(source), transport=self.name)
        finally:
            if self._connections.get(source) is conn:
                del self._connections[source]
            self._per_source[host] -= 1
            if self._per_source[host] <= 0:
                del self._per_source[host]
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _open(self, writer: asyncio.StreamWriter, source: Source) -> bool:
        """What a connection admitted (ACL, limits) needs before SIP flows: nothing over TCP."""
        return True

    async def _serve(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        while True:
            try:
                data = await self._read_message(reader, conn)
            except TimeoutError:
                self._drop("tcp_timeout", conn.source)
                return
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError) as exc:
                self._drop("tcp_framing", conn.source, error=str(exc)[:200])
                return
            except (ConnectionError, OSError):
                return
            if data is None:
                return
            # A stream that sent one unreadable message has lost its framing: hang up.
            if not self._received(data, conn.source):
                return

    async def _read_message(self, reader: asyncio.StreamReader, conn: _Connection) -> bytes | None:
        """The next message, None at EOF or after an idle connection's timeout."""
        limits = self.limits
        crlf = 0
        while True:
            try:
                async with asyncio.timeout(limits.idle_timeout_s):
                    first = await reader.read(1)
            except TimeoutError:
                if conn.keep or self.busy(conn.source):
                    continue  # a call's connection may be quiet for hours
                return None
            if not first:
                return None
            if first not in b"\r\n":
                break
            crlf += 1
            if crlf == 4:  # RFC 5626 §4.4.1: a double-CRLF ping gets a CRLF pong
                self._write(conn, b"\r\n")
                crlf = 0
        async with asyncio.timeout(limits.message_timeout_s):
            head = first + await reader.readuntil(b"\r\n\r\n")
            length = _content_length(head)
            if length > MAX_BODY_BYTES:
                raise ValueError(f"Content-Length {length} over {MAX_BODY_BYTES}")
            body = await reader.readexactly(length) if length else b""
        return head + body

    def send_to(self, data: bytes | Message, addr: Source) -> None:
        conn = self._connections.get((str(addr[0]), addr[1]))
        if conn is None:
            # RFC 3261 §18.2.2 would open a new connection; the peer will retransmit on its
            # own connection, and our requests go where the call's connection is.
            self._drop("tcp_no_connection", (str(addr[0])[:64], 0))
            return
        self._write(conn, data if isinstance(data, bytes) else bytes(data))

    def _write(self, conn: _Connection, data: bytes) -> None:
        transport = conn.writer.transport
        if transport.is_closing():
            return
        try:
            transport.write(data)
        except (OSError, RuntimeError) as exc:
            self._drop("send_failed", conn.source, error=str(exc)[:200])
            transport.abort()
            return
        if transport.get_write_buffer_size() > self.limits.max_send_buffer:
            # A peer that does not read what we send costs memory until it is let go.
            self._drop("tcp_send_buffer", conn.source)
            transport.abort()


class TlsTransport(TcpTransport):
    """SIP over TLS (RFC 3261 §26.3.1): the TCP listener, its ACL, limits and timeouts, with a
    TLS handshake after admission. The handshake is ours (`StreamWriter.start_tls`) rather than
    `start_server`'s, so that a connection still in its handshake counts against the limits and
    a source the ACL refuses costs no handshake. `context` is read at each accept: a reload
    replaces it for new connections, and those open keep the one they were made with."""

    name = "TLS"
    reliable = True

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
        log.info("sip.tls_connected", peer=_fmt(source), name=name[:100])
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
        """A request of ours; aiosipua's REGISTER names UDP in its Via whatever carries it,
        and a Contact must say transport=tls (see send_reply)."""
        if isinstance(message, SipRequest):
            vias = message.headers.get("via")
            if vias and vias[0].upper().startswith("SIP/2.0/UDP "):
                message.headers.remove("via")
                for index, via in enumerate(vias):
                    message.headers.append("Via", "SIP/2.0/TLS" + via[11:] if index == 0 else via)
            _tls_contact(message)
        super().send(message, addr)

    def _tls_refused(self, reason: str, source: Source, why: str) -> None:
        """A connection closed before SIP: counted, and logged (rate-limited) with why."""
        self.drops[reason] += 1
        self.on_drop(reason)
        if self._logs.allow(reason, source[0]):
            log.warning("sip.tls_refused", reason=reason, source=_fmt(source), error=why[:200])

    def send_reply(self, response: SipResponse) -> None:
        """Our responses' Contact says transport=tls (aiosipua writes a bare sip: URI), so the
        peer sends its in-dialog requests over TLS too."""
        _tls_contact(response)
        super().send_reply(response)


def _tls_contact(message: Message) -> None:
    contacts = message.headers.get("contact")
    if len(contacts) == 1:
        message.headers.set_single("Contact", tls_contact(contacts[0]))


def tls_contact(contact: str) -> str:
    """``<sip:host:port>`` as a TLS Contact: ``;transport=tls`` added to a sip: URI that names
    no transport (a sips: URI implies TLS already)."""
    value = contact.strip()
    if not (value.startswith("<sip:") and value.endswith(">")):
        return contact
    uri = value[1:-1]
    if ";transport=" in uri.lower():
        return contact
    return f"<{uri};transport=tls>"


def _untrusted(exc: ssl.SSLError) -> bool:
    text = f"{exc.reason} {exc}".upper()
    return any(
        key in text
        for key in ("CERTIFICATE_VERIFY_FAILED", "PEER_DID_NOT_RETURN_A_CERTIFICATE",
                    "CERTIFICATE_REQUIRED", "UNKNOWN_CA")
    )  # fmt: skip


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            value = value.strip()
            if not value.isdigit():
                raise ValueError("bad Content-Length")
            return int(value)
    return 0


def _fmt(source: Source) -> str:
    return f"{source[0]}:{source[1]}"


def bound_port(transport: object) -> int | None:
    """The port a transport really bound (it asked for port 0 in tests and the test caller)."""
    port = getattr(transport, "port", None)
    return port if isinstance(port, int) else None
