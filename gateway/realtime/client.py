"""One Realtime WebSocket session per call.

The session is opened, configured and confirmed (session.updated) before the
call is answered: a refused handshake becomes SIP 503, never 200 then silence.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.frames import apply_mask  # C speedup; undocumented: see ClientFrames
from websockets.protocol import State

from ..config import AgentConfig
from .auth import Auth, AuthError
from .protocol import (
    Dialect,
    Malformed,
    ProtocolError,
    ServerEvent,
    ServiceError,
    SessionReady,
)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a long answer's delta stays far below this
STALL_TIMEOUT_S = 10.0  # realtime.stall_timeout_s: a ping every half, its pong within half

_STATUS_HINTS = {
    400: "the deployment's model is not realtime-capable, or the URL is wrong",
    401: "the API key or token was refused (a GA URL must not carry api-version)",
    403: "access denied: the identity lacks the 'Cognitive Services OpenAI User' role",
    404: "deployment {deployment!r} not found (check realtime.deployment, and that "
    "realtime.url and realtime.protocol agree: /openai/v1/realtime is ga, /openai/realtime "
    "is preview)",
    429: "quota or concurrency limit reached",
}


class RealtimeConnectError(Exception):
    """The session could not be opened or configured; the call is refused with 503."""

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class RealtimeSession:
    """A configured Realtime session: send client events, iterate server events."""

    def __init__(self, ws: ClientConnection, dialect: Dialect, session: dict[str, Any]) -> None:
        self._ws = ws
        self.dialect = dialect
        self.session = session
        self.id: str = str(session.get("id", ""))
        self.opened_at = time.monotonic()
        self._frames = ClientFrames()

    @classmethod
    async def open(
        cls,
        *,
        base_url: str,
        deployment: str,
        dialect: Dialect,
        auth: Auth,
        agent: AgentConfig,
        audio_format: str,
        codec: str,
        connect_timeout: float,
        stall_timeout: float = STALL_TIMEOUT_S,
    ) -> RealtimeSession:
        """Connect, send session.update, wait for session.updated: all within the timeout."""
        url = dialect.url(base_url, deployment)
        try:
            async with asyncio.timeout(connect_timeout):
                headers = {**dialect.handshake_headers(), **await auth.headers()}
                ws = await _connect(url, headers, stall_timeout)
                try:
                    await ws.send(dialect.session_update(agent, audio_format, codec))
                    session = await _wait_session_updated(ws, dialect)
                except BaseException:
                    await ws.close()
                    raise
        except _OPEN_FAILURES as exc:
            raise _open_failed(exc, auth, deployment, connect_timeout) from None
        return cls(ws, dialect, session)

    async def send(self, text: str) -> None:
        await self._ws.send(text)

    def send_now(self, text: str, max_backlog: int) -> bool:
        """Write one event at once, from a callback: the caller's audio, 50 times a second.

        ``ws.send`` is a coroutine, so the audio would need a task hop per packet; this writes
        the frame straight to the transport, in the same order as any other send (websockets
        writes each of its frames to the transport at once too). The frame is built here
        rather than by websockets' ``Frame.serialize``, which costs 3x as much (a dataclass,
        checks, a BytesIO and a getrandom syscall for every frame's mask). Sending a complete
        text frame changes nothing in websockets' protocol state (we never send fragmented
        messages), which must be OPEN: checked first.
        Returns False, sending nothing, when more than
        ``max_backlog`` bytes already wait for a slow socket: real-time audio is better
        dropped than delayed. Raises ConnectionClosed once the socket is closing.
        """
        ws = self._ws
        transport = ws.transport
        if self.closing or transport.is_closing():
            raise ConnectionClosedError(None, None)
        if transport.get_write_buffer_size() > max_backlog:
            return False
        transport.write(self._frames.text(text.encode()))
        return True

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Server events until the socket closes; a clean close ends the iteration.

        A frame that is not a well-formed event comes out as ``Malformed``: one bad frame
        from the service must not end the call. ``recv`` is awaited here rather than through
        the connection's own async iterator, which wraps it in one more suspended generator
        step per event (every call's, in the young generation: gc_pauses.py).
        """
        recv = self._ws.recv
        while True:
            try:
                frame = await recv()
            except ConnectionClosedOK:
                return
            try:
                event: ServerEvent = self.dialect.parse(frame)
            except ProtocolError as exc:
                event = Malformed(str(exc), frame[:200] if isinstance(frame, str) else None)
            yield event

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def close(self, within_s: float | None = None) -> None:
        """The closing handshake; ``within_s``: given up after that long, the socket dropped."""
        if within_s is None:
            await self._ws.close()
            return
        try:
            async with asyncio.timeout(within_s):
                await self._ws.close()
        except TimeoutError:
            self.abort()

    @property
    def closing(self) -> bool:
        return self._ws.state is not State.OPEN

    def abort(self) -> None:
        """Drop the socket at once (a stalled service answers no close handshake either)."""
        self._ws.transport.abort()


class ClientFrames:
    """Masked, unfragmented text frames as a client sends them (RFC 6455 §5.2, §5.3).

    ``websockets.frames.apply_mask`` and the connection's ``transport`` are not websockets'
    documented API: pyproject pins the releases checked by
    tests/unit/test_websockets_contract.py (the sans-I/O ``send_text`` costs 1.8 us a frame
    against 0.5 here)."""

    MASKS = 1024  # mask keys fetched per getrandom call

    def __init__(self) -> None:
        self._keys = b""
        self._at = 0

    def text(self, payload: bytes) -> bytes:
        # §5.3: every frame gets a fresh, unpredictable mask key from a strong source of
        # entropy; os.urandom serves many keys at once.
        at = self._at
        if at >= len(self._keys):
            self._keys, at = os.urandom(4 * self.MASKS), 0
        key = self._keys[at : at + 4]
        self._at = at + 4
        n = len(payload)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 65536:
            head = _HEAD16.pack(0x81, 0x80 | 126, n)
        else:
            head = _HEAD64.pack(0x81, 0x80 | 127, n)
        return b"".join((head, key, apply_mask(payload, key)))


_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


async def _connect(url: str, headers: dict[str, str], stall_timeout: float) -> ClientConnection:
    """The WebSocket handshake, with the limits and keepalive a call's session needs."""
    return await connect(
        url,
        additional_headers=headers,
        compression=None,  # base64 audio hardly compresses; deflate costs CPU per frame
        max_size=MAX_MESSAGE_BYTES,
        # A service that stops answering pings has stalled: websockets closes
        # the socket (1011) and the link replaces the session.
        ping_interval=stall_timeout / 2,
        ping_timeout=stall_timeout / 2,
        close_timeout=2,
        open_timeout=None,  # the outer timeout covers the whole opening
        proxy=None if _is_loopback(url) else True,
    )


# What opening a session may raise, each told apart by _open_failed (TimeoutError is an
# OSError and InvalidStatus an InvalidHandshake: the order of its checks matters).
_OPEN_FAILURES = (
    TimeoutError,
    AuthError,
    InvalidHandshake,
    InvalidURI,
    ConnectionClosed,
    OSError,
    ProtocolError,
)


def _open_failed(
    exc: BaseException, auth: Auth, deployment: str, connect_timeout: float
) -> RealtimeConnectError:
    """Why a session could not be opened, in words an operator can act on."""
    if isinstance(exc, TimeoutError):
        return RealtimeConnectError(f"no session within {connect_timeout:g} s (connect timeout)")
    if isinstance(exc, AuthError | ProtocolError):
        return RealtimeConnectError(str(exc))
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        hint = auth.refusal_hint(status) or _STATUS_HINTS.get(
            status, "the service refused the handshake"
        ).format(deployment=deployment)
        retry = exc.response.headers.get("Retry-After")
        return RealtimeConnectError(
            f"handshake refused with HTTP {status}: {hint}",
            status=status,
            retry_after=int(retry) if retry and retry.isdigit() else None,
        )
    if isinstance(exc, InvalidHandshake | InvalidURI):
        return RealtimeConnectError(f"handshake failed: {exc}")
    if isinstance(exc, ConnectionClosed):
        return RealtimeConnectError(f"service closed the session while opening: {exc}")
    if isinstance(exc, OSError):
        return RealtimeConnectError(f"cannot reach the service: {exc.strerror or exc}")
    raise TypeError(f"not an opening failure: {exc!r}")  # _OPEN_FAILURES names each one


async def _wait_session_updated(ws: ClientConnection, dialect: Dialect) -> dict[str, Any]:
    async for frame in ws:
        event = dialect.parse(frame)
        if isinstance(event, SessionReady) and not event.created:
            return event.session
        if isinstance(event, ServiceError):
            raise RealtimeConnectError(
                f"session.update rejected: {event.code or event.type}: {event.message}"
            )
    raise RealtimeConnectError(f"service closed the session while opening (code {ws.close_code})")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
