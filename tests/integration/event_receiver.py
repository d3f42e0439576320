"""A receiver of call events on loopback, as a customer would write one: an aiohttp server
that checks each request with the Standard Webhooks library (an independent implementation
of the signature) and answers a status the test chooses."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook

from .peers import LOOPBACK, free_udp_port

SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()


@dataclass
class Received:
    headers: dict[str, str]
    event: dict[str, Any]  # the body, as the library verified it
    status: int  # what the receiver answered


class EventReceiver:
    """`answers`: the statuses of the first requests, in order; 200 after them.
    `on_request(event)` runs inside the handler (e.g. to look at the outbox right then)."""

    def __init__(self, port: int | None = None, answers: list[int] | None = None) -> None:
        self.port = port or free_udp_port(also_tcp=True)
        self.answers = list(answers or [])
        self.received: list[Received] = []
        self.on_request: Callable[[dict[str, Any]], None] = lambda event: None
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/events"

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The events answered 2xx, in order."""
        return [r.event for r in self.received if 200 <= r.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        event = Webhook(SECRET).verify(body, headers)  # raises on a bad signature: a 500
        assert json.loads(body) == event
        self.on_request(event)
        status = self.answers.pop(0) if self.answers else 200
        self.received.append(Received(headers, event, status))
        self._changed.set()
        return web.Response(status=status, text="ok")

    async def wait_until(
        self, done: Callable[[EventReceiver], bool], timeout: float, what: str
    ) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not done(self):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            got = [(r.event["type"], r.status) for r in self.received]
            raise AssertionError(f"no {what} within {timeout} s; received {got}") from None

    async def start(self) -> EventReceiver:
        app = web.Application()
        app.add_routes([web.post("/events", self._handle)])
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EventReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
