"""A decision webhook of the test's: a real aiohttp server on loopback whose answers the test
chooses, and which can hold an answer back until the test releases it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .peers import LOOPBACK

Answer = Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]


def reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


class HookServer:
    """Records each request (headers, raw body), answers with `answer(request JSON)`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.asked = asyncio.Event()
        self.release = asyncio.Event()  # for answers that wait for the test
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hooks/incoming"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append((dict(request.headers), raw))
        self.asked.set()
        return await self.answer(json.loads(raw))

    async def held(self, response: web.StreamResponse, timeout: float = 20) -> web.StreamResponse:
        """`response` once the test sets `release` (bounded: the test fails, nothing hangs)."""
        async with asyncio.timeout(timeout):
            await self.release.wait()
        return response

    async def __aenter__(self) -> HookServer:
        app = web.Application()
        app.router.add_post("/hooks/incoming", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
