"""Console pages held open during a load run (bench_load.py ``--console N --listen K``).

N clients read the live stream (server-sent events: every call's events and the 2 Hz
snapshot of all calls), K more listen in on a call each (WebSocket, stereo PCM16). They count
what they receive; the console's cost is the gateway's CPU with them against without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

_SNAPSHOT = re.compile(r"(^|;)live \([^)]*gateway/call_controls\.py")


@dataclass
class ConsoleLoad:
    base: str
    pages: int
    listeners: int
    counts: dict[str, int] = field(default_factory=lambda: {"messages": 0, "stats": 0})
    audio_bytes: int = 0
    sse_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pages and the listen-ins; returns once each got its first bytes."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        async with self._session.get(self.base + "/console/v1/calls") as response:
            calls = (await response.json())["calls"]
        started: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for _ in range(self.pages):
            ready = loop.create_future()
            started.append(ready)
            self._tasks.append(asyncio.create_task(self._page(ready)))
        for call in calls[: self.listeners]:
            ready = loop.create_future()
            started.append(ready)
            self._tasks.append(asyncio.create_task(self._listen(call["id"], ready)))
        await asyncio.wait_for(asyncio.gather(*started), 20)

    async def _page(self, ready: asyncio.Future[None]) -> None:
        assert self._session is not None
        try:
            async with self._session.get(self.base + "/console/events") as response:
                async for line in response.content:
                    self.sse_bytes += len(line)
                    if line.startswith(b"event: "):
                        self.counts["messages"] += 1
                        if line == b"event: stats\n":
                            self.counts["stats"] += 1
                            if not ready.done():
                                ready.set_result(None)
        except Exception as exc:  # reported, not raised: the run goes on
            self.errors.append(repr(exc))
            if not ready.done():
                ready.set_exception(exc)

    async def _listen(self, call_id: str, ready: asyncio.Future[None]) -> None:
        assert self._session is not None
        url = self.base.replace("http", "ws", 1) + f"/console/v1/calls/{call_id}/listen"
        try:
            async with self._session.ws_connect(url, origin=self.base) as ws:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        self.audio_bytes += len(message.data)
                        if not ready.done():
                            ready.set_result(None)
        except Exception as exc:
            self.errors.append(repr(exc))
            if not ready.done():
                ready.set_exception(exc)

    def reset(self) -> None:
        """Count from now (the measurement window)."""
        self.counts = {"messages": 0, "stats": 0}
        self.audio_bytes = self.sse_bytes = 0

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    def report(self, seconds: float) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "listeners": self.listeners,
            "sse_messages_per_s": round(self.counts["messages"] / seconds, 1),
            "snapshots_per_s_per_page": round(self.counts["stats"] / seconds / self.pages, 2)
            if self.pages
            else None,
            "sse_kib_per_s": round(self.sse_bytes / seconds / 1024, 1),
            "audio_kib_per_s": round(self.audio_bytes / seconds / 1024, 1),
            "errors": self.errors[:5],
        }


def console_share(profile: str) -> dict[str, Any]:
    """From a py-spy raw profile of the gateway (``--profile``): the share of its busy samples
    spent in the console's code (the hub, the snapshot of the calls, the pages' and listen-ins'
    sends, the audio tap, the log tap). Times the gateway's CPU: the console's CPU."""
    total = console = 0
    with open(profile, encoding="utf-8", errors="replace") as file:
        for line in file:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            if "gateway/console/" in stack or _SNAPSHOT.search(stack):
                console += int(count)
    return {"samples": total, "console_samples": console, "share": round(console / total, 4)}
