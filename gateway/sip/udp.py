"""SIP over UDP: one non-blocking socket read on the loop's readiness callback.

Its own module because a datagram listener has rules a stream has not: a bounded number of
reads per wake-up so that a flood cannot starve the calls, ICMP errors for earlier sends
that must not stop it, and a send that can fail in ways asyncio's endpoint once died of.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

import structlog

from .addresses import BadAddress, sendable
from .door import Door
from .transport import Listener, Message, Source

log = structlog.get_logger("gateway.sip")

MAX_DATAGRAM = 65535
READS_PER_WAKEUP = 32  # UDP datagrams read per readable event before other work runs


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
