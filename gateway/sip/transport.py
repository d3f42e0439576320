"""SIP over UDP, TCP and TLS: our own listeners around aiosipua's parser. This module is
what they share: the parse of one message, and `Listener`, the base the UAS talks to.

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
  type closes a listener; a listener that stops all the same reports it (`on_dead`).

Every packet dropped is counted by reason (`on_drop`), and logged at most once a minute per
source and reason. The listeners themselves: `udp.py`, `tcp.py` (connection limits and
timeouts), `tls_transport.py` (handshakes, mutual TLS, connections of our own).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from aiosipua import SipMessage, SipRequest, SipResponse

from .addresses import BadAddress, reply_address, stamp_via
from .door import Door, LogLimiter

log = structlog.get_logger("gateway.sip")

Message = SipRequest | SipResponse
Source = tuple[str, int]


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
    contact_transport: str | None = None  # what our Contact names (TCP, TLS): see send

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
                    log.exception("sip.handler_failed", source=source_text(source))
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
                    log.exception("sip.handler_failed", source=source_text(source))

    def _drop(self, reason: str, source: Source, **fields: Any) -> None:
        self.drops[reason] += 1
        self.on_drop(reason)
        if self._logs.allow(reason, source[0]):
            log.info("sip.dropped", reason=reason, source=source_text(source), transport=self.name,
                     **fields)  # fmt: skip

    # --- out ------------------------------------------------------------------------------

    def send_reply(self, response: SipResponse) -> None:
        """A response, to where its request came from; `on_reply` sees it first."""
        self._name_transport(response)
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
        self._name_transport(message)
        self.send_to(bytes(message), addr)

    def _name_transport(self, message: Message) -> None:
        """Over TCP and TLS, our Contact says so (aiosipua and our requests write a bare
        sip: URI, which RFC 3263 reads as UDP): the peer's next requests in the dialog come
        the same way, not over UDP, or nowhere on a gateway without it."""
        if self.contact_transport is None:
            return
        contacts = message.headers.get("contact")
        if len(contacts) == 1:
            message.headers.set_single(
                "Contact", with_transport(contacts[0], self.contact_transport)
            )

    def send_to(self, data: bytes | Message, addr: Source) -> None:
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        raise NotImplementedError


def with_transport(contact: str, transport: str) -> str:
    """``<sip:host:port>`` with ``;transport=`` added to a sip: URI that names none (a sips:
    URI implies TLS already; anything else is left as it is)."""
    value = contact.strip()
    if not (value.startswith("<sip:") and value.endswith(">")):
        return contact
    uri = value[1:-1]
    if ";transport=" in uri.lower():
        return contact
    return f"<{uri};transport={transport}>"


def source_text(source: Source) -> str:
    return f"{source[0]}:{source[1]}"


def bound_port(transport: object) -> int | None:
    """The port a transport really bound (it asked for port 0 in tests and the test caller)."""
    port = getattr(transport, "port", None)
    return port if isinstance(port, int) else None
