"""The console's routes on the control API's server: pages, the live stream (server-sent
events), listen-in (a WebSocket of PCM16), the history of ended calls, and the API's actions
under ``/console/v1`` (the very handlers of ``/v1``, reached with the console's cookie).

Behind the API's token (``auth.py``); every response carries a strict Content-Security-Policy
(no inline script, nothing from another origin).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from aiohttp import WSMsgType, web

from ..api.door import ApiDoor
from ..api.problems import Problem, problem_response
from .auth import ConsoleAuth, clean_label, cross_site, user_label
from .history import CALL_ID, DATE, History, Search
from .hub import Hub, Subscriber, sse
from .pages import PAGES, StaticFiles
from .tap import CallTap, Listener

log = structlog.get_logger("gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX = "/console"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
KEEPALIVE_S = 15.0
SEND_TIMEOUT_S = 10.0
MAX_LISTENERS = 16
MAX_QUERY_CHARS = 100
ACTIONS = ("", "/{call_id}", "/{call_id}/hangup", "/{call_id}/transfer", "/{call_id}/say")
ACTIONS += ("/{call_id}/dtmf",)


class LiveCalls(Protocol):
    """What the console reads from the calls in progress (call_controls.py)."""

    def live(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """Every call's live figures, or one call's (none when it is not in progress)."""
        ...

    def alive(self, call_id: str) -> bool: ...

    def tap(self, call_id: str) -> tuple[CallTap, Callable[[], None]]:
        """The call's audio tap and the function that puts it away when unused; Problem
        404/409 when the call is unknown or not answered."""
        ...


class Console:
    """Adds the console to the API's aiohttp application (an ``api.server.Extension``)."""

    prefix = PREFIX

    def __init__(
        self,
        calls: LiveCalls,
        hub: Hub,
        history: History,
        token: bytes | None,
        door: ApiDoor | None = None,
    ) -> None:
        self.calls = calls
        self.hub = hub
        self.history = history
        self.auth = ConsoleAuth(token)
        self.door = door or ApiDoor.never()  # the API's: one count of refusals per source
        self.files = StaticFiles()
        self.listeners = 0
        self.listens_started = 0  # since start (also a metric when wired: on_listen)
        self.on_listen: Callable[[], None] = lambda: None
        hub.stats_source = calls.live

    def add_routes(self, app: web.Application, api: dict[tuple[str, str], Handler]) -> None:
        """The console's routes; `api` the /v1 handlers by method and path."""
        router = app.router
        router.add_get(PREFIX, self._to_index)
        for name in PAGES:
            router.add_get(f"{PREFIX}/{name}", self._page)
        router.add_post(f"{PREFIX}/login", self._login)
        router.add_post(f"{PREFIX}/logout", self._logout)
        router.add_get(PREFIX + "/static/{name}", self._static)
        router.add_get(PREFIX + "/events", self._events)
        router.add_get(PREFIX + "/v1/calls/{call_id}/listen", self._listen)
        router.add_get(PREFIX + "/history/search", self._search)
        router.add_get(PREFIX + "/history/calls/{call_id}", self._detail)
        router.add_get(PREFIX + "/history/calls/{call_id}/recording.wav", self._recording)
        router.add_get(PREFIX + "/history/calls/{call_id}/timeline.svg", self._timeline)
        for tail in ACTIONS:
            path = "/v1/calls" + tail
            method = "get" if tail in ("", "/{call_id}") else "post"
            router.add_route(method.upper(), PREFIX + path, api[method, path])
        app.on_response_prepare.append(_security_headers)

    def close(self) -> None:
        self.hub.close()

    # --- who may ------------------------------------------------------------------------------

    async def authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The console's door: public files, the bearer token, or the cookie (CSRF-checked)."""
        path = request.path
        if _public(path) or self.auth.open or self.auth.bearer_ok(request):
            return await handler(request)
        peer = request.remote or "?"
        if self.auth.cookie_ok(request):
            why = cross_site(request, websocket=_is_websocket(request))
            if why is None:
                return await handler(request)
            log.warning("console.refused", source=peer, path=path[:200], reason=why)
            return problem_response(403, f"refused: {why}")
        self.door.refused(request, "console.unauthorized")
        if request.method == "GET" and path.removeprefix(PREFIX + "/") in PAGES:
            raise web.HTTPSeeOther(PREFIX + "/login")
        return problem_response(
            401, "the console needs the API's token: log in, or Authorization: Bearer TOKEN"
        )

    async def _login(self, request: web.Request) -> web.Response:
        peer = request.remote or "?"
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return problem_response(403, "refused: its Origin is not this server")
        if request.content_type != "application/x-www-form-urlencoded":
            return problem_response(400, "send the login form as a form")
        form = await request.post()
        token, user = form.get("token"), clean_label(str(form.get("user", "")))
        if self.auth.open:
            raise web.HTTPSeeOther(PREFIX + "/")
        if not isinstance(token, str) or not self.auth.token_ok(token):
            self.door.refused(request, "console.login_failed")
            return web.Response(
                status=401,
                body=self.files.login_page("That token is not the API's token."),
                content_type="text/html",
                charset="utf-8",
            )
        log.info("console.login", source=peer, user=user or "console")
        response = web.Response(status=303, headers={"Location": PREFIX + "/"})
        self.auth.login(response, user or "console")
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        response = web.json_response({"detail": "logged out"})
        for name in ("gw_console", "gw_console_user"):
            response.del_cookie(name, path=PREFIX)
        return response

    # --- pages --------------------------------------------------------------------------------

    async def _to_index(self, request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(PREFIX + "/")

    async def _page(self, request: web.Request) -> web.Response:
        name = PAGES[request.path.removeprefix(PREFIX + "/")]
        return self._file(name)

    async def _static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.Response:
        found = self.files.get(name)
        if found is None:
            raise Problem(404, "no such file")
        body, kind = found
        return web.Response(body=body, headers={"Content-Type": kind})

    # --- live ---------------------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """The live stream: every call's events and figures, or one call's (``?call=ID``)."""
        call_id = request.query.get("call") or None
        if call_id is not None and not CALL_ID.fullmatch(call_id):
            raise Problem(400, "call is a call id")
        sub = self.hub.subscribe(call_id)
        if sub is None:
            raise Problem(503, "too many console pages are open")
        meters = _Meters(self.calls, call_id)
        meters.attach()
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-store",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            calls = self.calls.live(call_id)
            await response.write(b"retry: 1000\n\n" + sse("stats", {"calls": calls}))
            await self._stream(sub, response, meters)
        except (TimeoutError, ConnectionError):
            pass  # the page went away, or does not keep up: it reconnects
        finally:
            self.hub.unsubscribe(sub)
            meters.release()
        return response

    async def _stream(self, sub: Subscriber, response: web.StreamResponse, meters: _Meters) -> None:
        while True:
            try:
                await asyncio.wait_for(sub.ready.wait(), KEEPALIVE_S)
            except TimeoutError:
                await asyncio.wait_for(response.write(b": keepalive\n\n"), SEND_TIMEOUT_S)
                continue
            if sub.dropped:
                return
            batch = b"".join(sub.queue)
            sub.queue.clear()
            sub.ready.clear()
            meters.attach()  # a page opened while the call was being set up
            await asyncio.wait_for(response.write(batch), SEND_TIMEOUT_S)

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        """Listen-in: the call's two sides as stereo PCM16 (caller left, agent right)."""
        call_id = request.match_info["call_id"]
        if self.listeners >= MAX_LISTENERS:
            raise Problem(503, "too many listeners")
        tap, untap = self.calls.tap(call_id)
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
        await ws.prepare(request)
        user, peer = user_label(request), request.remote or "?"
        listener = Listener(user)
        tap.listeners.add(listener)
        self.listeners += 1
        self.listens_started += 1
        self.on_listen()
        started = time.monotonic()
        log.info("console.listen_started", call_id=call_id, source=peer, user=user)
        try:
            await ws.send_json({"rate": tap.rate, "channels": 2, "format": "s16le"})
            await self._send_audio(ws, listener, call_id)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            tap.listeners.discard(listener)
            self.listeners -= 1
            untap()
            seconds = round(time.monotonic() - started, 1)
            log.info(
                "console.listen_stopped", call_id=call_id, source=peer, user=user, seconds=seconds
            )
            await ws.close()
        return ws

    async def _send_audio(
        self, ws: web.WebSocketResponse, listener: Listener, call_id: str
    ) -> None:
        """Audio as it comes, until the page closes the socket or the call ends."""
        closed = asyncio.ensure_future(_until_closed(ws))
        try:
            while not closed.done():
                ready = asyncio.ensure_future(listener.ready.wait())
                await asyncio.wait({ready, closed}, timeout=1.0, return_when="FIRST_COMPLETED")
                ready.cancel()
                data = listener.take()
                if data:
                    await asyncio.wait_for(ws.send_bytes(data), SEND_TIMEOUT_S)
                    listener.sent += len(data)
                if not self.calls.alive(call_id):
                    return  # the call ended
        finally:
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await closed

    # --- history ------------------------------------------------------------------------------

    async def _search(self, request: web.Request) -> web.Response:
        fields = {k: request.query.get(k, "")[:MAX_QUERY_CHARS] for k in Search.__annotations__}
        if fields["date"] and not DATE.fullmatch(fields["date"]):
            raise Problem(400, "date is YYYY-MM-DD")
        found = await asyncio.to_thread(self.history.search, Search(**fields))
        return web.json_response({"calls": found})

    async def _detail(self, request: web.Request) -> web.Response:
        detail = await asyncio.to_thread(self.history.detail, request.match_info["call_id"])
        if detail is None:
            raise Problem(404, "no record of this call")
        return web.json_response(detail)

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        record = await asyncio.to_thread(self.history.record, request.match_info["call_id"])
        path = self.history.recording(record) if record is not None else None
        if path is None:
            raise Problem(404, "no recording of this call")
        return web.FileResponse(path, headers={"Content-Type": "audio/wav"})

    async def _timeline(self, request: web.Request) -> web.StreamResponse:
        path = await asyncio.to_thread(self.history.timeline, request.match_info["call_id"])
        if path is None:
            raise Problem(404, "no timeline of this call")
        headers = {"Content-Type": "image/svg+xml", "Content-Security-Policy": SVG_CSP}
        return web.FileResponse(path, headers=headers)


class _Meters:
    """A page on one call shows its meters while open: it watches the call's tap from the
    answer on (a call still being set up has none yet)."""

    def __init__(self, calls: LiveCalls, call_id: str | None) -> None:
        self.calls = calls
        self.call_id = call_id
        self._release: Callable[[], None] | None = None

    def attach(self) -> None:
        if self.call_id is None or self._release is not None:
            return
        try:
            tap, untap = self.calls.tap(self.call_id)
        except Problem:
            return
        tap.watchers += 1

        def release() -> None:
            tap.watchers -= 1
            untap()

        self._release = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


async def _until_closed(ws: web.WebSocketResponse) -> None:
    """Reads (and ignores) what the page sends until it closes the socket."""
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            return


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.path.startswith(PREFIX):
        return
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")


def _public(path: str) -> bool:
    """The login form and its style sheet need no token."""
    return path in (PREFIX + "/login", PREFIX + "/static/console.css")


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"
