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


async def test_every_transfer_outcome_is_an_event_and_a_record_entry() -> None:
    """Blind transfers report their outcome too (accepted: joined_by_refer; refused:
    failed), with the mode, in call.transferred and the record's transfers."""
    for outcome, word in (((True, "200 OK"), "joined_by_refer"), ((False, BUSY), "failed")):
        _, actions, _ = await transfer_call(outcome)
        [entry] = actions.transfers
        assert entry["mode"] == "blind" and entry["outcome"] == word
        assert entry["ok"] is outcome[0] and entry["target"] == "sip:600@pbx.example"


async def test_an_api_transfer_runs_once_and_ends_the_call_when_joined() -> None:
    """The control API's transfer: its outcome as soon as it is reported; a second one
    meanwhile is refused; joined, the call ends (transferred); the events see it."""
    c = call()
    model: list[Command] = []
    emitted: list[tuple[str, dict]] = []
    release = asyncio.Event()

    async def run(command: Transfer, report) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
        report("joined_by_refer", "200 OK")
        await release.wait()
        return True, "200 OK"

    actions = Actions(
        Tools([SALES], {}), None, c.log, lambda k, d: emitted.append((k, dict(d))), None, run
    )
    actions.attach(c.core, model.extend)
    known = actions.api_transfer(Transfer("sip:q@pbx.example", "warm", "a summary"))
    assert await asyncio.wait_for(known, 5) == ("joined_by_refer", "200 OK")
    try:
        actions.api_transfer(Transfer("sip:q@pbx.example"))
        raise AssertionError("a second transfer was started")
    except RuntimeError:
        pass
    release.set()
    await settle(actions)
    assert model == [HangUp("transferred")]
    [(kind, data)] = emitted
    assert kind == "call.transferred" and data["mode"] == "warm" and data["ok"] is True
    await actions.close()
