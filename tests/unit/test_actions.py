"""Actions, the asyncio side of the core's RunTool and Transfer: a transfer_call runs through
the real tools and core, the REFER (a stand-in for the SIP side) only once the core says so,
and the call record keeps what the model was told."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from gateway.bridge.actions import Actions
from gateway.bridge.core import Command, HangUp, RunTool, Transfer
from gateway.bridge.tools import Tools, transfer_output
from gateway.realtime import protocol as rt
from tests.unit.test_call_core import SALES, TRANSFER_EVENT, call

BUSY = "SIP/2.0 486 Busy Here"


async def settle(actions: Actions) -> None:
    """Every task Actions started has run to its end (bounded)."""
    await asyncio.wait_for(asyncio.gather(*actions._tasks), 5)


async def transfer_call(outcome: tuple[bool, str]) -> tuple[list[Command], Actions, list[str]]:
    c = call()
    refers: list[str] = []
    model: list[Command] = []

    async def refer(target: str) -> tuple[bool, str]:
        refers.append(target)
        return outcome

    actions = Actions(Tools([SALES], {}), refer, c.log)

    def runner(commands: Sequence[Command]) -> None:
        for command in commands:
            if isinstance(command, RunTool):
                actions.run_tool(command.call)
            elif isinstance(command, Transfer):
                actions.transfer(command)
            else:
                model.append(command)

    actions.attach(c.core, runner)
    runner(c.core.server_event(rt.ResponseStarted("r1"), 0.0))
    runner(c.core.server_event(TRANSFER_EVENT, 0.0))
    await settle(actions)
    assert refers == [] and model == []  # the answer still runs: no REFER, no output yet
    runner(c.core.server_event(rt.ResponseDone("r1", "completed", None), 0.0))
    c.core.next_frame()
    runner(c.core.take_due())
    await settle(actions)
    assert refers == ["sip:600@pbx.example"]
    await actions.close()
    return model, actions, refers


async def test_an_accepted_transfer_tells_the_model_and_ends_the_call() -> None:
    model, actions, _ = await transfer_call((True, ""))
    told = transfer_output("sales", True, "")
    assert model == [rt.FunctionOutput("call_9", told), HangUp("transferred")]
    assert actions.tool_calls[0]["output"] == told and json.loads(told)["ok"] is True


async def test_a_refused_transfer_is_recorded_as_the_model_was_told() -> None:
    model, actions, _ = await transfer_call((False, BUSY))
    told = transfer_output("sales", False, BUSY)
    assert model == [rt.FunctionOutput("call_9", told), rt.CreateResponse()]
    [entry] = actions.tool_calls
    assert entry["name"] == "transfer_call" and entry["output"] == told
    assert "486 Busy Here" in told and "still here" in told
