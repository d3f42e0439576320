"""The embedded agent's asyncio shell: a websockets server on loopback, one task per connection.

Each connection runs an :class:`~gateway.agent.session.AgentSession` (the protocol, no I/O):
the shell feeds it the client's frames, sends what it queues, and paces response audio at
``burst_speed`` x real time. The handshake is checked as the service checks it (path, key,
``model`` / the preview's ``api-version`` and ``deployment``), with Azure-like JSON bodies on
400/401/403/404/429. Every task belongs to one connection and ends with it;
:meth:`EmbeddedRealtimeServer.close` leaves nothing running.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
import math
import time
from collections.abc import Coroutine, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import preview
from .responses import Response as AgentResponse
from .schema import MAX_APPEND_CHARS
from .session import AgentSession, Frame, Output, StreamAudio

__all__ = ["EmbeddedRealtimeServer", "EmbeddedSession"]

log = structlog.get_logger(__name__)

KEEP_CLOSED_SESSIONS = 100
PATHS = ("/openai/v1/realtime", "/v1/realtime")

REFUSALS: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "The 'model' query parameter is required: /openai/v1/realtime?model=<deployment>.",
    ),
    401: (
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
        "a valid key for an active subscription and use a correct regional API endpoint for your "
        "resource.",
    ),
    403: (
        "PermissionDenied",
        "The principal lacks the required data action "
        "`Microsoft.CognitiveServices/accounts/OpenAI/deployments/realtime/action`.",
    ),
    404: (
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within "
        "the last 5 minutes, please wait a moment and try again.",
    ),
    429: (
        "429",
        "Requests to the Realtime API have exceeded the concurrency or token rate limit of your "
        "current pricing tier. Please retry after {retry_after} second(s).",
    ),
}  # fmt: skip


class EmbeddedSession:
    """One connection. Tests read ``received``, ``path``, ``query``, ``headers``, ``config``."""

    def __init__(self, server: EmbeddedRealtimeServer, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        self._server = server
        self._ws = ws
        url = urlsplit(request.path)
        self.path: str = url.path
        self.raw_path: str = request.path
        self.query: dict[str, str] = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.headers: Headers = request.headers
        is_preview = preview.is_preview(url.path, self.headers)
        self.dialect = "preview" if is_preview else "ga"
        self.model: str = self.query.get("model") or self.query.get("deployment", "")
        self.speech_started_at: list[float] = []  # monotonic send times (when keep_events > 0)
        self.opened_at = time.monotonic()
        self.close_code: int | None = None
        expires_at = server.expires_at
        if expires_at is None:
            expires_at = int(time.time() + (server.max_session_s or 3600))
        self.protocol = AgentSession(self.model, expires_at, preview=is_preview, script=server)
        self.id: str = self.protocol.id
        self._closed = asyncio.Event()
        self._stalled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._tg: asyncio.TaskGroup | None = None
        # Frames go out in the order the protocol queued them, even when a send must wait.
        self._send_lock = asyncio.Lock()

    # -- public, for tests ---------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The effective session (what ``session.updated`` last carried)."""
        return self.protocol.config

    @property
    def received(self) -> list[dict[str, Any]]:
        """Client events received, as parsed (at most ``keep_events``)."""
        return self.protocol.received

    @property
    def conversation_id(self) -> str:
        return self.protocol.conversation_id

    @property
    def active(self) -> AgentResponse | None:
        return self.protocol.active

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """Tasks of this session still running (none once the connection has ended)."""
        return frozenset(t for t in self._tasks if not t.done())

    async def drop(self, code: int = 1011, reason: str = "Internal server error") -> None:
        """End the connection as a failing service does: a close frame with `code`, or for
        1006 no close frame at all (the TCP connection just goes)."""
        if code == 1006:
            self._ws.transport.abort()
        else:
            await self._ws.close(code, reason)

    def stall(self, *, pongs: bool = False) -> None:
        """Hang as a stuck service does: nothing more is sent, and the socket stays open
        until the peer gives up on it. Without ``pongs`` nothing is read either (a stuck
        process: no pong); with it, the connection stays alive and only the events stop (a
        model that stopped generating mid-answer)."""
        self._stalled = True
        if not pongs:
            self._ws.transport.pause_reading()

    async def send_raw(self, text: str) -> None:
        """A frame as is, e.g. not JSON at all (a service bug, a broken proxy)."""
        await self._ws.send(text)

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        log.info("embedded_session_open", session_id=self.id, model=self.model)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                try:
                    if self._server.max_session_s is not None:
                        self._spawn(self._expire(self._server.max_session_s))
                    self.protocol.open()
                    await self._flush()
                    async for message in self._ws:
                        self.protocol.receive(message)
                        await self._flush()
                except ConnectionClosed:
                    pass
                finally:
                    for task in list(self._tasks):
                        task.cancel()
        finally:
            self.protocol.close()  # closed sessions stay listed for tests: keep them light
            self.close_code = self._ws.close_code
            self._closed.set()
            log.info("embedded_session_closed", session_id=self.id, code=self.close_code)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._tg is not None
        task = self._tg.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("embedded_session_task_failed", session_id=self.id)

    async def _expire(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        minutes = f"{seconds / 60:g}"
        await self._ws.close(1001, f"Your session hit the maximum duration of {minutes} minutes.")

    # -- sending ---------------------------------------------------------------------------

    async def _flush(self) -> None:
        """Send what the protocol queued, in order; start pacing any response it started."""
        outputs = self.protocol.take()
        if outputs:
            async with self._send_lock:
                await self._send(outputs)

    async def _send(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, StreamAudio):
                self._spawn(self._stream(out.response))
                continue
            self._note(out)
            if not self._stalled:
                await self._ws.send(out.text)

    def _note(self, frame: Frame) -> None:
        if frame.type == "input_audio_buffer.speech_started" and self._server.keep_events > 0:
            self.speech_started_at.append(time.monotonic())

    async def _stream(self, resp: AgentResponse) -> None:
        loop = asyncio.get_running_loop()
        speed = self._server.burst_speed
        t0 = loop.time()
        sent_ms = 0.0
        for delta, ms in resp.chunks:
            if not self.protocol.next_delta(resp, delta, ms):
                await self._flush()  # anything queued meanwhile (normally nothing)
                return
            await self._flush()
            sent_ms += ms
            delay = t0 + sent_ms / 1000 / speed - loop.time() if math.isfinite(speed) else 0.0
            await asyncio.sleep(max(0.0, delay))
        self.protocol.complete(resp)
        await self._flush()


class EmbeddedRealtimeServer:
    """A loopback GA Realtime server that answers every caller turn with the caller's own words.

    ``refuse_status``, ``api_key`` and ``max_session_s`` are read at each handshake or session
    start, so a test may change them between connections. ``keep_events`` bounds
    ``EmbeddedSession.received`` (0 records nothing: use that when running as the gateway's agent).
    ``answer`` = (24 kHz int16 audio, transcript) answers every caller turn with that instead of
    the echo (a long answer to talk over, in tests); the greeting stays the chime.
    ``function_calls`` = [(name, arguments JSON), ...]: the next caller turns are answered, one
    each, by a call of that function instead of audio (tests of tools); the response the client
    asks for afterwards (response.create) is the usual one.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        refuse_status: int | None = None,
        burst_speed: float = 4.0,
        max_session_s: float | None = None,
        retry_after_s: int = 1,
        keep_events: int = 10_000,
        answer: tuple[np.ndarray, str] | None = None,
        function_calls: Sequence[tuple[str, str]] = (),
    ) -> None:
        if not burst_speed > 0:
            raise ValueError(f"burst_speed must be > 0, got {burst_speed}")
        if refuse_status is not None:
            http.HTTPStatus(refuse_status)  # ValueError when it is not an HTTP status
        if max_session_s is not None and max_session_s <= 0:
            raise ValueError(f"max_session_s must be > 0, got {max_session_s}")
        self.host = host
        self.port = port
        self.api_key = api_key
        self.refuse_status = refuse_status
        self.burst_speed = burst_speed
        self.max_session_s = max_session_s
        # When set, session.created announces this expires_at (epoch seconds) whatever the
        # real limit: a service whose clock is off, or one that means harm (tests).
        self.expires_at: float | None = None
        self.retry_after_s = retry_after_s
        self.keep_events = keep_events
        self.answer = answer
        self.function_calls = list(function_calls)
        self.sessions: list[EmbeddedSession] = []
        self._server: Server | None = None

    @property
    def url(self) -> str:
        """The GA base URL (Azure's /openai/v1/realtime)."""
        if self._server is None:
            raise RuntimeError("the embedded Realtime server is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{PATHS[0]}"

    @property
    def preview_url(self) -> str:
        """The preview base URL (Azure's /openai/realtime)."""
        return self.url.removesuffix(PATHS[0]) + preview.PREVIEW_PATH

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=20,
            ping_timeout=20,
            max_size=MAX_APPEND_CHARS + 1024 * 1024,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("embedded_realtime_listening", url=self.url)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> EmbeddedRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- handshake ---------------------------------------------------------------------------

    def _refuse(
        self, connection: ServerConnection, status: int, message: str | None = None
    ) -> Response:
        code, default = REFUSALS.get(status, (str(status), http.HTTPStatus(status).phrase))
        if message is None:
            message = default.format(retry_after=self.retry_after_s)
        body = {"error": {"code": code, "message": message}}
        response = connection.respond(status, json.dumps(body) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        if status == 429:
            response.headers["Retry-After"] = str(self.retry_after_s)
        return response

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if self.refuse_status is not None:
            return self._refuse(connection, self.refuse_status)
        path = url.path.rstrip("/")
        if path not in PATHS and path != preview.PREVIEW_PATH:
            return self._refuse(
                connection,
                404,
                f"Resource not found: {url.path} (use {PATHS[0]}?model=<deployment>).",
            )
        if self.api_key is not None and not self._authorized(request, query):
            return self._refuse(connection, 401)
        if path == preview.PREVIEW_PATH:
            problem = preview.handshake_problem(query)
            if problem:
                return self._refuse(connection, 400, problem)
        elif not query.get("model", [""])[0]:
            return self._refuse(connection, 400)
        return None

    def _authorized(self, request: Request, query: dict[str, list[str]]) -> bool:
        assert self.api_key is not None
        expected = self.api_key.encode()
        offered = [request.headers.get("api-key", ""), *query.get("api-key", [])]
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            offered.append(auth[7:].strip())
        return any(hmac.compare_digest(key.encode(), expected) for key in offered if key)

    async def _handler(self, ws: ServerConnection) -> None:
        session = EmbeddedSession(self, ws)
        self.sessions.append(session)
        closed = [s for s in self.sessions if s.closed]
        for old in closed[: max(0, len(closed) - KEEP_CLOSED_SESSIONS)]:
            self.sessions.remove(old)
        await session.run()
