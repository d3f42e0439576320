"""SIP over UDP, with aiosipua's framing and dispatch.

aiosipua's own protocol asserts `isinstance(transport, asyncio.DatagramTransport)`,
which CPython 3.11's selector datagram transport does not satisfy: the assert
logs an error at every start. This protocol does the same job without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiosipua.transport import UdpSipTransport

log = structlog.get_logger("gateway.sip")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        self._owner._dispatch(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip.udp_error", error=str(exc))


class UdpTransport(UdpSipTransport):
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=self.local_addr
        )
        self._udp_transport = transport  # type: ignore[assignment]


def bound_port(transport: object) -> int | None:
    """The port a transport really bound (it asked for port 0 in tests and the test caller)."""
    udp = getattr(transport, "_udp_transport", None)
    if udp is not None:
        return int(udp.get_extra_info("sockname")[1])
    server = getattr(transport, "_server", None)
    if server is not None and server.sockets:
        return int(server.sockets[0].getsockname()[1])
    return None
