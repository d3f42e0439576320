"""MCP servers as tools: the config checks what the Realtime service will be asked to reach,
and the session.update declaring them is valid against the official SDK's models."""

from __future__ import annotations

import json

import pytest

from gateway.config import ConfigError, check_environment, parse_config
from gateway.realtime.protocol import dialect_for, tool_name
from tests.realtime_schema import validate_client_event

MCP = {
    "type": "mcp",
    "server_label": "crm",
    "server_url": "https://mcp.crm.example/sse",
    "allowed_tools": ["lookup_customer", "open_ticket"],
    "headers_from_env": {"Authorization": "CRM_MCP_TOKEN"},
    "description": "The customer records",
}


def test_the_session_update_declares_the_server_as_the_sdk_defines_it() -> None:
    cfg = parse_config({"agent": {"tools": [MCP, {"type": "end_call"}]}})
    text = dialect_for("ga", None).session_update(cfg.agent, "pcm16", "PCMU")
    event = json.loads(text)
    validate_client_event(event)
    [mcp, end_call] = event["session"]["tools"]
    assert mcp == {
        "type": "mcp",
        "server_label": "crm",
        "server_url": "https://mcp.crm.example/sse",
        "require_approval": "never",
        "allowed_tools": ["lookup_customer", "open_ticket"],
        "headers": {"Authorization": ""},
        "server_description": "The customer records",
    }
    assert end_call["type"] == "function" and end_call["name"] == "end_call"


def test_the_header_values_come_from_the_environment_and_are_checked_there() -> None:
    from gateway.realtime.protocol import tool_definitions

    cfg = parse_config({"agent": {"tools": [MCP]}})
    [definition] = tool_definitions(cfg.agent.tools, {"CRM_MCP_TOKEN": "Bearer abc"})
    assert definition["headers"] == {"Authorization": "Bearer abc"}
    assert check_environment(cfg, {}) == [
        "agent.tools[0].headers_from_env.Authorization: environment variable CRM_MCP_TOKEN is "
        "not set or empty"
    ]
    assert check_environment(cfg, {"CRM_MCP_TOKEN": "Bearer abc"}) == []


def test_an_mcp_server_is_never_a_function_the_gateway_runs() -> None:
    cfg = parse_config({"agent": {"tools": [MCP]}})
    assert tool_name(cfg.agent.tools[0]) == "mcp:crm"  # no function can be called that


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"server_url": "http://mcp.crm.example/sse"}, "https://"),
        ({"server_url": "https://10.0.0.5/mcp"}, "private address"),
        ({"server_url": "https://127.0.0.1:8000/mcp"}, "cannot reach"),
        ({"server_label": "crm server"}, "tool name"),
        ({"headers_from_env": {"Authorization": "sk-abcdefabcdefabcdefabcdef"}}, "API key"),
        ({"allowed_tools": ["ok", "not ok"]}, "tool name"),
    ],
)
def test_what_the_service_could_not_or_should_not_reach_is_refused(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"agent": {"tools": [{**MCP, **change}]}})


def test_the_preview_protocol_has_no_mcp() -> None:
    with pytest.raises(ConfigError, match=r"MCP servers exist only with realtime\.protocol: ga"):
        parse_config(
            {
                "realtime": {
                    "url": "wss://x.openai.azure.com/openai/realtime",
                    "protocol": "preview",
                    "api_version": "2025-04-01-preview",
                    "deployment": "gpt-4o-realtime-preview",
                },
                "agent": {"tools": [MCP]},
            }
        )
