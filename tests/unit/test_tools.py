"""Tools the model calls: real HTTP webhooks on loopback, hang up and transfer via a control."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gateway.bridge.tools import ToolCall, Tools, transfer_output
from gateway.config import AgentConfig, parse_config
from gateway.realtime.protocol import FunctionCall, GaDialect, Other, PreviewDialect
from tests.realtime_schema import (
    validate_client_event,
    validate_preview_client_event,
    validate_server_event,
)


class Control:
    def __init__(self, refuse: str | None = None) -> None:
        self.hung_up = False
        self.transfers: list[tuple[str, str, str]] = []
        self._refuse = refuse

    def hang_up_after_playback(self) -> None:
        self.hung_up = True

    def transfer_after_playback(self, call: ToolCall, destination: str, target: str) -> str | None:
        self.transfers.append((call.call_id, destination, target))
        return self._refuse


class Service:
    """A webhook service on 127.0.0.1 that records what it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.never = asyncio.Event()  # never set: the 'slow' endpoint waits on it

    async def order(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((body, dict(request.headers)))
        return web.json_response({"status": "shipped", "id": body["arguments"]["order"]})

    async def slow(self, request: web.Request) -> web.Response:
        await self.never.wait()
        return web.json_response({})

    async def broken(self, request: web.Request) -> web.Response:
        return web.Response(status=502, text="bad gateway")

    async def text(self, request: web.Request) -> web.Response:
        return web.Response(text="plain words")


@pytest.fixture
async def service() -> AsyncIterator[tuple[Service, str]]:
    svc = Service()
    app = web.Application()
    app.add_routes(
        [
            web.post("/order", svc.order),
            web.post("/slow", svc.slow),
            web.post("/broken", svc.broken),
            web.post("/text", svc.text),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield svc, f"http://127.0.0.1:{port}"
    svc.never.set()  # let a request the client gave up on finish, so the server can stop
    await runner.cleanup()


def agent_with_tools(base: str) -> AgentConfig:
    def hook(name: str, path: str, timeout: float = 5.0) -> dict[str, Any]:
        return {
            "type": "webhook",
            "name": name,
            "description": f"{name} tool",
            "url": f"{base}{path}",
            "timeout_s": timeout,
            "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
            "headers_from_env": {"Authorization": "CRM_TOKEN"},
            # The service is on loopback, over plain HTTP: both must be allowed explicitly.
            "allow_private_addresses": True,
            "allow_insecure_http": True,
        }

    cfg = parse_config(
        {
            "agent": {
                "tools": [
                    hook("lookup_order", "/order"),
                    hook("slow", "/slow", timeout=0.2),
                    hook("broken", "/broken"),
                    hook("text", "/text"),
                    {"type": "end_call"},
                    {"type": "transfer_call", "targets": {"sales": "sip:600@pbx.example"}},
                ]
            }
        }
    )
    return cfg.agent


def tools_for(base: str, **env: str) -> Tools:
    return Tools(agent_with_tools(base).tools, {"caller": "+15550100"}, environ=env)


async def test_webhook_result_goes_back_and_secrets_come_from_env(service) -> None:
    svc, base = service
    tools = tools_for(base, CRM_TOKEN="Bearer s3cret")
    out = await tools.run(ToolCall("c1", "lookup_order", '{"order": "A-17"}'), Control())
    await tools.close()
    assert json.loads(out) == {"status": "shipped", "id": "A-17"}
    body, headers = svc.requests[0]
    assert body == {
        "tool": "lookup_order",
        "arguments": {"order": "A-17"},
        "call": {"caller": "+15550100"},
    }
    assert headers["Authorization"] == "Bearer s3cret"


@pytest.mark.parametrize(
    "name,arguments,error",
    [
        ("slow", "{}", "no answer within 0.2 s"),
        ("broken", "{}", "HTTP 502"),
        ("lookup_order", "{not json", "not valid JSON"),
        ("lookup_order", "[1]", "must be a JSON object"),
        ("nope", "{}", "unknown tool"),
    ],
)
async def test_failures_become_answers_for_the_model(service, name, arguments, error) -> None:
    _, base = service
    tools = tools_for(base, CRM_TOKEN="t")
    out = json.loads(await tools.run(ToolCall("c", name, arguments), Control()))
    await tools.close()
    assert out["ok"] is False and error in out["error"]


async def test_missing_env_var_and_plain_text_answers(service) -> None:
    _, base = service
    tools = tools_for(base)
    missing = json.loads(await tools.run(ToolCall("c", "text", "{}"), Control()))
    assert "missing environment variable CRM_TOKEN" in missing["error"]
    tools = tools_for(base, CRM_TOKEN="t")
    assert json.loads(await tools.run(ToolCall("c", "text", "{}"), Control())) == {
        "result": "plain words"
    }
    await tools.close()


async def test_end_call_and_transfer_use_call_control(service) -> None:
    _, base = service
    tools = tools_for(base)
    control = Control()
    await tools.run(ToolCall("c", "end_call", ""), control)
    assert control.hung_up
    # A valid destination: the call's core answers later, with the transfer's outcome.
    later = await tools.run(ToolCall("c", "transfer_call", '{"destination":"sales"}'), control)
    assert later is None and control.transfers == [("c", "sales", "sip:600@pbx.example")]
    bad = json.loads(
        await tools.run(ToolCall("c", "transfer_call", '{"destination":"x"}'), control)
    )
    assert "unknown destination" in bad["error"] and len(control.transfers) == 1
    refused = Control(refuse="a transfer is already under way")
    busy = json.loads(
        await tools.run(ToolCall("c", "transfer_call", '{"destination":"sales"}'), refused)
    )
    assert busy["ok"] is False and "already under way" in busy["error"]
    await tools.close()


def test_the_transfer_outcome_is_told_truthfully() -> None:
    assert json.loads(transfer_output("sales", True, "")) == {
        "ok": True,
        "result": "transferred to sales",
    }
    failed = json.loads(transfer_output("sales", False, "SIP/2.0 486 Busy Here"))
    assert failed["ok"] is False
    assert "486 Busy Here" in failed["error"] and "still here" in failed["error"]


def test_session_update_carries_valid_tools_in_both_dialects() -> None:
    agent = agent_with_tools("http://127.0.0.1:9")
    ga = json.loads(GaDialect().session_update(agent, "pcm16", "PCMU"))
    validate_client_event(ga)
    names = [t["name"] for t in ga["session"]["tools"]]
    assert names == ["lookup_order", "slow", "broken", "text", "end_call", "transfer_call"]
    assert ga["session"]["tools"][-1]["parameters"]["properties"]["destination"]["enum"] == [
        "sales"
    ]
    preview = json.loads(
        PreviewDialect("2025-04-01-preview").session_update(agent, "pcm16", "PCMU")
    )
    validate_preview_client_event(preview)
    assert preview["session"]["tools"] == ga["session"]["tools"]


def test_function_call_and_output_events() -> None:
    done = {
        "type": "response.output_item.done",
        "event_id": "e",
        "response_id": "r",
        "output_index": 0,
        "item": {
            "id": "i",
            "object": "realtime.item",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_1",
            "name": "lookup_order",
            "arguments": '{"order":"A-17"}',
        },
    }
    validate_server_event(done)
    expected = FunctionCall("r", "i", "call_1", "lookup_order", '{"order":"A-17"}')
    assert GaDialect().parse(json.dumps(done)) == expected
    assert PreviewDialect("v").parse(json.dumps(done)) == expected
    message = {**done, "item": {"id": "m", "type": "message", "role": "assistant", "content": []}}
    assert GaDialect().parse(json.dumps(message)) == Other("response.output_item.done")
    output = json.loads(GaDialect().function_output("call_1", '{"ok":true}'))
    validate_client_event(output)
    validate_preview_client_event(json.loads(PreviewDialect("v").function_output("c", "{}")))
