"""SIP over TCP: a stream listener with the limits a public port needs.

Connections are limited in total and per source, the ACL applies at accept, an idle
connection is closed (not while a call uses it), each message has a deadline once it has
begun (slowloris), header, body and send buffer are bounded, and the framing is read by
Content-Length (RFC 3261 §18.3). TLS (tls_transport.py) is this listener with a handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .door import Door
from .transport import Listener, Message, Source, source_text

log = structlog.get_logger("gateway.sip")

MAX_HEADER_BYTES = 64 * 1024  # a header section larger than this is not from a PBX
MAX_BODY_BYTES = 64 * 1024  # an SDP is a few hundred bytes


@dataclass(frozen=True, slots=True)
class TcpLimits:
    max_connections: int = 1024
    max_connections_per_source: int = 64
    idle_timeout_s: float = 120.0
    message_timeout_s: float = 10.0
    max_send_buffer: int = 256 * 1024


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    source: Source
    keep: bool = False  # ours to a registrar: never closed for idling


class TcpTransport(Listener):
    name = "TCP"
    reliable = True
    contact_transport = "tcp"

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
                log.exception("sip.handler_failed", source=source_text(source), transport=self.name)
        finally:
            if self._connections.get(source) is conn:
                del self._connections[source]
            self._per_source[host] -= 1
            if self._per_source[host] <= 0:
                del self._per_source[host]
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def open(self, addr: Source, name: str = "") -> str | None:
        """A connection of ours to `addr` (a trunk), kept open and served: what we send there
        and what comes back travel over it. None once it is up, else why not."""
        if (str(addr[0]), addr[1]) in self._connections:
            return None
        if not self.door.admits(addr[0]):
            return "not in sip.allow_from"
        if len(self._connections) >= self.limits.max_connections:
            return "connection limit"
        try:
            async with asyncio.timeout(self.limits.message_timeout_s):
                reader, writer = await asyncio.open_connection(
                    addr[0], addr[1], limit=MAX_HEADER_BYTES
                )
        except (TimeoutError, OSError) as exc:
            return str(exc) or type(exc).__name__
        task = asyncio.get_running_loop().create_task(
            self._hold(reader, writer, (str(addr[0]), addr[1]), accepted=False, keep=True)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.sleep(0)  # the connection is in the table once _hold has run
        return None

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


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            value = value.strip()
            if not value.isdigit():
                raise ValueError("bad Content-Length")
            return int(value)
    return 0
