"""SIP over UDP and TCP, with aiosipua's framing and dispatch, and three fixes.

- aiosipua's UDP protocol asserts `isinstance(transport, asyncio.DatagramTransport)`,
  which CPython 3.11's selector datagram transport does not satisfy: ours does not.
- Every response passes `on_reply` first, so the UAS sees what it answered to an
  INVITE (the transaction layer resends it, see transactions.py).
- Over TCP a response goes back on the connection its request came in on
  (RFC 3261 §18.2.2), not to the Via's sent-by port, where nobody listens.

Unparseable input costs one log line, never a stack trace per packet.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from aiosipua import SipMessage, SipRequest, SipResponse
from aiosipua.transport import TcpSipTransport, UdpSipTransport, _stamp_via_received

from .transactions import TxKey, transaction_key

log = structlog.get_logger("gateway.sip")

ReplyHook = Callable[[SipResponse], None]
MAX_ROUTES = 4096  # TCP: remembered request -> connection pairs (oldest forgotten first)


def parse_datagram(data: bytes) -> SipRequest | SipResponse | None:
    """A SIP message, or None for a keep-alive (RFC 5626 §3.5.1 CRLFs); ValueError if bad."""
    if not data.strip():
        return None
    try:
        message = SipMessage.parse(data)
    except (ValueError, IndexError, UnicodeError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    if isinstance(message, SipResponse) and not 100 <= message.status_code <= 699:
        raise ValueError(f"status code {message.status_code} out of range")
    if isinstance(message, SipRequest):
        version = data.lstrip().split(b"\n", 1)[0].strip().rsplit(b" ", 1)[-1]
        if version.upper() != b"SIP/2.0":
            raise ValueError(f"unsupported protocol version {version[:20]!r}")
    return message


class _Hooks:
    on_message: Any
    on_reply: ReplyHook | None = None
    name = "UDP"

    def _deliver(
        self, data: bytes, addr: tuple[str, int]
    ) -> SipRequest | SipResponse | bool | None:
        """The message handled, None for a keep-alive, False when it could not be parsed."""
        try:
            message = parse_datagram(data)
            if message is None:
                return None
            if isinstance(message, SipRequest):
                _stamp_via_received(message, addr)
        except Exception as exc:
            log.info(
                "sip.unparseable",
                source=f"{addr[0]}:{addr[1]}",
                bytes=len(data),
                error=str(exc)[:200],
            )
            return False
        self._received(message, addr)
        if self.on_message is not None:
            try:
                self.on_message(message, addr)
            except Exception:
                log.exception("sip.handler_failed", source=f"{addr[0]}:{addr[1]}")
        return message

    def _received(self, message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        """A message parsed, before it is handled (and answered)."""

    def _before_reply(self, response: SipResponse) -> None:
        if self.on_reply is not None:
            self.on_reply(response)


class UdpTransport(_Hooks, UdpSipTransport):
    name = "UDP"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=self.local_addr
        )
        self._udp_transport = transport  # type: ignore[assignment]

    def _dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        self._deliver(data, addr)

    def send_reply(self, response: SipResponse) -> None:
        self._before_reply(response)
        super().send_reply(response)

    def resend(self, response: SipResponse) -> None:
        """A retransmission: the same bytes again, not seen by `on_reply`."""
        super().send_reply(response)


class TcpTransport(_Hooks, TcpSipTransport):
    name = "TCP"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._routes: OrderedDict[TxKey, tuple[str, int]] = OrderedDict()

    def _dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._deliver(data, addr) is False and addr in self._connections:
            # A stream that sent one unreadable message has lost its framing: hang up.
            self._connections[addr][1].close()

    def _received(self, message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        # Remembered before the request is handled: its answer may be sent at once.
        key = transaction_key(message) if isinstance(message, SipRequest) else None
        if key is not None:
            self._routes[key] = addr
            self._routes.move_to_end(key)
            while len(self._routes) > MAX_ROUTES:
                self._routes.popitem(last=False)

    def send_reply(self, response: SipResponse) -> None:
        self._before_reply(response)
        self.resend(response)

    def resend(self, response: SipResponse) -> None:
        key = transaction_key(response)
        addr = self._routes.get(key) if key is not None else None
        if addr is not None and addr in self._connections:
            self.send(response, addr)
            return
        try:
            super().send_reply(response)
        except RuntimeError as exc:  # the connection is gone: nothing to answer on
            log.info("sip.tcp_reply_dropped", status=response.status_code, error=str(exc))

    def send(self, message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        try:
            super().send(message, addr)
        except RuntimeError as exc:
            log.info("sip.tcp_send_dropped", destination=f"{addr[0]}:{addr[1]}", error=str(exc))


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        self._owner._dispatch(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip.udp_error", error=str(exc))


def bound_port(transport: object) -> int | None:
    """The port a transport really bound (it asked for port 0 in tests and the test caller)."""
    udp = getattr(transport, "_udp_transport", None)
    if udp is not None:
        return int(udp.get_extra_info("sockname")[1])
    server = getattr(transport, "_server", None)
    if server is not None and server.sockets:
        return int(server.sockets[0].getsockname()[1])
    return None
