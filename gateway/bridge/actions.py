"""The model's tool calls, run for one call: the asyncio side of ``CallCore``'s ``RunTool``.

A tool may take seconds (a webhook, a transfer waiting for the far end), so each runs in a task
of its own; its output goes back to the core (``CallCore.tool_done``), whose commands the
bridge runs. Tools act on the call through :class:`~.tools.CallControl`, which this object is:
hang up after the agent's last words, transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from ..hooks.events import Emit, no_events, tool_data
from .core import CallCore, Command
from .tools import ToolCall, Tools

TransferFn = Callable[[str], Awaitable[tuple[bool, str]]]
Runner = Callable[[Sequence[Command]], None]


class Actions:
    def __init__(
        self,
        tools: Tools | None,
        transfer: TransferFn | None,
        log: Any,
        emit: Emit = no_events,
    ) -> None:
        self._tools = tools
        self._emit = emit  # hooks.events: call.tool, call.transferred
        self._transfer = transfer
        self._log = log
        self._core: CallCore | None = None
        self._run: Runner = lambda commands: None
        self._tasks: set[asyncio.Task[None]] = set()
        self.tool_calls: list[dict[str, Any]] = []  # for the call record

    def attach(self, core: CallCore, run: Runner) -> None:
        """The call's core, fed each tool's output, and the runner of its commands."""
        self._core = core
        self._run = run

    def run_tool(self, call: ToolCall) -> None:
        self._spawn(self._run_tool(call))

    async def _run_tool(self, call: ToolCall) -> None:
        started = time.monotonic()
        if self._tools is None:
            output = '{"ok": false, "error": "no tools are configured"}'
        else:
            output = await self._tools.run(call, self)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        self.tool_calls.append(
            {"name": call.name, "arguments": call.arguments, "output": output, "ms": elapsed_ms}
        )
        self._log.info("call.tool", name=call.name, ms=elapsed_ms, output=output[:200])
        self._emit("call.tool", tool_data(call.name, call.arguments, output, elapsed_ms))
        if self._core is not None:
            self._run(self._core.tool_done(call, output, time.monotonic()))

    # CallControl, for the tools

    def hang_up_after_playback(self) -> None:
        if self._core is not None:
            self._core.hang_up_after_words()

    async def transfer(self, target: str) -> tuple[bool, str]:
        if self._transfer is None:
            return False, "transfers are not available on this gateway"
        ok, detail = await self._transfer(target)
        self._log.info("call.transfer", target=target, ok=ok, detail=detail)
        if ok:
            self._emit("call.transferred", {"target": target, "detail": detail})
        if ok and self._core is not None:
            self._run(self._core.transferred())
        return ok, detail

    # --- lifetime -----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception as exc:  # a tool never ends a call by failing
            self._log.warning("call.action_failed", error=repr(exc))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tools is not None:
            await self._tools.close()
