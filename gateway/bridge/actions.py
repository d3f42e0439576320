"""What happens on a call besides talking: the caller's keys and the model's tool calls.

Both end in a message to the model and, usually, a response.create. That request waits
until no response is in progress: the service refuses a second one
(conversation_already_has_active_response).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..config import DtmfConfig
from ..realtime import protocol as rt
from ..realtime.link import RealtimePort
from .keypad import KEYS_PER_S, Keypad, dtmf_message
from .tools import ToolCall, Tools

KEY_DROP_LOG_EVERY = 100

TransferFn = Callable[[str], Awaitable[tuple[bool, str]]]


class Actions:
    def __init__(
        self,
        session: RealtimePort,
        tools: Tools | None,
        dtmf: DtmfConfig,
        transfer: TransferFn | None,
        log: Any,
    ) -> None:
        self._session = session
        self._tools = tools
        self._respond_to_keys = dtmf.respond
        self._keypad = Keypad(dtmf.inter_digit_ms, dtmf.max_digits)
        self._key_timer: asyncio.TimerHandle | None = None
        self._keys_waiting = False  # a response to keys waits for the model to be free
        self._transfer = transfer
        self._log = log
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.hang_up_requested: str | None = None  # end reason once the agent's words are heard
        self.hang_up_now = asyncio.Event()  # end at once (the caller was transferred)
        self.end_reason = "agent_hangup"
        self.tool_calls: list[dict[str, Any]] = []  # for the call record

    # --- the response in progress -------------------------------------------------------------

    def response_started(self) -> None:
        self._idle.clear()

    def response_done(self) -> None:
        self._idle.set()

    @property
    def responding(self) -> bool:
        return not self._idle.is_set()

    async def _respond(self) -> None:
        await self._idle.wait()
        self._idle.clear()  # ours now; response.created/done keep it true to the service
        await self._session.send(rt.CreateResponse())

    # --- key presses --------------------------------------------------------------------------

    def key(self, digit: str) -> bool:
        """A key from the caller; False when it came faster than the keypad's rate and was
        dropped (the first drop of a call, and every KEY_DROP_LOG_EVERY-th, is logged)."""
        now = time.monotonic()
        if not self._keypad.accept(now):
            if self._keypad.dropped % KEY_DROP_LOG_EVERY == 1:
                self._log.warning(
                    "call.dtmf_dropped", dropped=self._keypad.dropped, limit_per_s=KEYS_PER_S
                )
            return False
        entry = self._keypad.press(digit, now)
        if self._key_timer is not None:
            self._key_timer.cancel()
            self._key_timer = None
        if entry is not None:
            self._spawn(self._send_keys(entry))
        elif (deadline := self._keypad.deadline) is not None:
            delay = max(deadline - time.monotonic(), 0.0)
            self._key_timer = asyncio.get_running_loop().call_later(delay, self._keys_due)
        return True

    def _keys_due(self) -> None:
        self._key_timer = None
        entry = self._keypad.due(time.monotonic())
        if entry is not None:
            self._spawn(self._send_keys(entry))

    async def _send_keys(self, entry: str) -> None:
        self._log.info("call.dtmf_to_model", keys=entry)
        await self._session.send(rt.AddText("user", dtmf_message(entry)))
        if self._respond_to_keys and not self._keys_waiting:
            # One response answers every entry sent before it: entries that come while one
            # waits for the model to be free ask for no response of their own.
            self._keys_waiting = True
            try:
                await self._idle.wait()
            finally:
                self._keys_waiting = False
            await self._respond()

    # --- tool calls ---------------------------------------------------------------------------

    def function_call(self, event: rt.FunctionCall) -> None:
        self._spawn(self._run_tool(event))

    async def _run_tool(self, event: rt.FunctionCall) -> None:
        started = time.monotonic()
        if self._tools is None:
            output = '{"ok": false, "error": "no tools are configured"}'
        else:
            output = await self._tools.run(
                ToolCall(event.call_id, event.name, event.arguments), self
            )
        elapsed_ms = round((time.monotonic() - started) * 1000)
        self.tool_calls.append(
            {"name": event.name, "arguments": event.arguments, "output": output, "ms": elapsed_ms}
        )
        self._log.info("call.tool", name=event.name, ms=elapsed_ms, output=output[:200])
        await self._session.send(rt.FunctionOutput(event.call_id, output))
        if self.hang_up_requested is None and not self.hang_up_now.is_set():
            await self._respond()  # the model speaks about the result

    # CallControl, for the tools

    def hang_up_after_playback(self) -> None:
        self.hang_up_requested = "agent_hangup"

    async def transfer(self, target: str) -> tuple[bool, str]:
        if self._transfer is None:
            return False, "transfers are not available on this gateway"
        ok, detail = await self._transfer(target)
        self._log.info("call.transfer", target=target, ok=ok, detail=detail)
        if ok:
            self.end_reason = "transferred"
            self.hang_up_now.set()
        return ok, detail

    # --- lifetime -----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception as exc:  # a failed send means the session is gone: the call ends
            self._log.warning("call.action_failed", error=repr(exc))

    async def close(self) -> None:
        if self._key_timer is not None:
            self._key_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tools is not None:
            await self._tools.close()
