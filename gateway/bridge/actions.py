"""The model's tool calls and the call's transfer, run for one call: the asyncio side of
``CallCore``'s ``RunTool`` and ``Transfer``.

A tool may take seconds (a webhook), and so may a transfer (the far end answering), so each
runs in a task of its own; the result goes back to the core (``CallCore.tool_done``,
``CallCore.transfer_done``), whose commands the bridge runs. Tools act on the call through
:class:`~.tools.CallControl`, which this object is: both requests go to the core, which
decides when they happen (once the agent's last words are heard).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from ..hooks.events import Emit, no_events, tool_data
from ..realtime import protocol as rt
from .core import TRANSFERRED, CallCore, Command, HangUp, Transfer
from .tools import ToolCall, Tools

TransferFn = Callable[[str], Awaitable[tuple[bool, str]]]
Report = Callable[[str, str], None]  # a transfer's outcome word and detail, once known
# A transfer, blind or warm (transfers.CallTransfers.run): reports its outcome, then returns
# the tool's result once it is over (a bridged one: when a side hangs up).
TransferRun = Callable[[Transfer, Report], Awaitable[tuple[bool, str]]]
KeysFn = Callable[[str], str]  # keys toward the other side -> how they went (ValueError: not)
Runner = Callable[[Sequence[Command]], None]


class Actions:
    def __init__(
        self,
        tools: Tools | None,
        transfer: TransferFn | None,
        log: Any,
        emit: Emit = no_events,
        keys: KeysFn | None = None,
        transfers: TransferRun | None = None,
    ) -> None:
        self._tools = tools
        self._keys = keys
        self._emit = emit  # hooks.events: call.tool, call.transferred
        self._transfer = transfer
        self._transfers = transfers
        self.transfers: list[dict[str, Any]] = []  # for the call record: each with its outcome
        self._api_transfer: Transfer | None = None  # the control API's, while under way
        self.warm_ring_s = 30.0  # agent.transfer.ring_timeout_s (the API's wait is longer)
        self._log = log
        self._core: CallCore | None = None
        self._run: Runner = _run_nothing
        self._tasks: set[asyncio.Task[None]] = set()
        self.tool_calls: list[dict[str, Any]] = []  # for the call record
        self._unanswered: dict[str, dict[str, Any]] = {}  # a transfer's entry, by call_id

    def attach(self, core: CallCore, run: Runner) -> None:
        """The call's core, fed each tool's output, and the runner of its commands."""
        self._core = core
        self._run = run

    def detach(self) -> None:
        """The call is over: its core and runner (the bridge's) are let go."""
        self._core = None
        self._run = _run_nothing

    def run_tool(self, call: ToolCall) -> None:
        self._spawn(self._run_tool(call))

    async def _run_tool(self, call: ToolCall) -> None:
        started = time.monotonic()
        if self._tools is None:
            output = '{"ok": false, "error": "no tools are configured"}'
        else:
            output = await self._tools.run(call, self)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        entry = {"name": call.name, "arguments": call.arguments, "output": output, "ms": elapsed_ms}
        self.tool_calls.append(entry)
        if output is None:  # the core answers it with the transfer's outcome
            self._unanswered[call.call_id] = entry
            self._log.info("call.tool", name=call.name, ms=elapsed_ms, output="(transfer pending)")
            return
        self._log.info("call.tool", name=call.name, ms=elapsed_ms, output=output[:200])
        self._emit("call.tool", tool_data(call.name, call.arguments, output, elapsed_ms))
        if self._core is not None:
            self._run(self._core.tool_done(call, output, time.monotonic()))

    # CallControl, for the tools

    def hang_up_after_playback(self) -> None:
        if self._core is not None:
            self._core.hang_up_after_words()

    def transfer_after_playback(
        self, call: ToolCall, destination: str, target: str, mode: str = "blind", summary: str = ""
    ) -> str | None:
        if (self._transfer is None and self._transfers is None) or self._core is None:
            return "transfers are not available on this gateway"
        if mode == "warm" and self._transfers is None:
            return "warm transfers are not available on this call"
        if self._api_transfer is not None:
            return "a transfer is already under way"
        return self._core.transfer_after_words(call, destination, target, mode, summary)

    def send_keys(self, digits: str) -> str:
        if self._keys is None:
            raise ValueError("keys cannot be sent on this call")
        return self._keys(digits)

    # The core's Transfer

    def transfer(self, command: Transfer) -> None:
        """Transfer the caller now (the core judged it the moment); the outcome to the core."""
        self._spawn(self._refer(command))

    async def _refer(self, command: Transfer) -> None:
        assert self._core is not None
        reported: list[str] = []

        def report(outcome: str, detail: str) -> None:
            reported.append(outcome)
            self.reported(command.target, command.mode, outcome, detail, command.destination)

        try:
            if self._transfers is not None:
                ok, detail = await self._transfers(command, report)
            else:
                assert self._transfer is not None
                ok, detail = await self._transfer(command.target)
        except Exception as exc:  # the caller is still here: the model must hear so
            self._log.warning("call.transfer_failed", error=repr(exc))
            ok, detail = False, f"the transfer failed ({type(exc).__name__})"
        if not reported:
            report("joined_by_refer" if ok else "failed", detail)
        commands = self._core.transfer_done(ok, detail, time.monotonic())
        for command in commands:
            if isinstance(command, rt.FunctionOutput) and command.call_id in self._unanswered:
                entry = self._unanswered.pop(command.call_id)
                entry["output"] = command.output
                self._emit(
                    "call.tool",
                    tool_data(entry["name"], entry["arguments"], command.output, entry["ms"]),
                )
        self._run(commands)

    def api_transfer(self, command: Transfer) -> asyncio.Future[tuple[str, str]]:
        """A transfer the control API asked for, run as the model's are (events, record):
        its outcome word and detail once known. Joined or bridged, the call ends (reason
        transferred) once the transfer is over; not, the model is told (a warm one's
        caller is back). RuntimeError when one is under way already."""
        core = self._core
        if self._transfers is None or core is None:
            raise RuntimeError("transfers are not available on this call")
        if self._api_transfer is not None or core.ending.pending:
            raise RuntimeError("a transfer or the end of the call is under way")
        self._api_transfer = command
        known: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._spawn(self._run_api_transfer(command, known))
        return known

    async def _run_api_transfer(
        self, command: Transfer, known: asyncio.Future[tuple[str, str]]
    ) -> None:
        assert self._transfers is not None and self._core is not None

        def report(outcome: str, detail: str) -> None:
            self.reported(command.target, command.mode, outcome, detail, command.destination)
            if not known.done():
                known.set_result((outcome, detail))

        try:
            ok, detail = await self._transfers(command, report)
        except Exception as exc:
            self._log.warning("call.transfer_failed", error=repr(exc))
            ok, detail = False, f"the transfer failed ({type(exc).__name__})"
            if not known.done():
                report("failed", detail)
        finally:
            self._api_transfer = None
        if ok:
            self._run([HangUp(TRANSFERRED)])
        elif command.mode == "warm":
            self._run(self._core.say(detail, "instruct", time.monotonic()))

    def reported(
        self, target: str, mode: str, outcome: str, detail: str, destination: str = ""
    ) -> None:
        """A transfer's outcome, known: the log, the events (call.transferred), the record."""
        entry = {
            "target": target,
            "destination": destination or None,
            "mode": mode,
            "outcome": outcome,
            "ok": outcome in ("joined_by_refer", "bridged"),
            "detail": detail,
        }
        self._log.info("call.transfer", **entry)
        self.transfers.append(entry)
        self._emit("call.transferred", entry)

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


def _run_nothing(commands: Sequence[Command]) -> None:
    """No call to run commands on: not attached yet, or over."""
