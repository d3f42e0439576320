"""The tools the model is told about in session.update: functions (webhook, end_call,
transfer_call, send_dtmf; the same shape in GA and preview) and MCP servers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..config import EndCallTool, McpTool, SendDtmfTool, Tool, TransferTool, WebhookTool
from ..sip.transfer_context import MAX_SUMMARY_CHARS

__all__ = ["tool_definitions", "tool_name"]


def tool_definitions(
    tools: list[Tool], environ: Mapping[str, str] = os.environ
) -> list[dict[str, Any]]:
    """Tools for session.update: functions, the same shape in GA and preview; MCP servers
    (GA only: the config refuses them with preview), their headers read from `environ`."""
    return [
        _mcp_definition(tool, environ) if isinstance(tool, McpTool) else _tool_definition(tool)
        for tool in tools
    ]


def tool_name(tool: Tool) -> str:
    """The name the model calls a tool by (an MCP server's is not a function name: the
    service runs its calls, and no function can be named with a colon)."""
    if isinstance(tool, McpTool):
        return f"mcp:{tool.server_label}"
    return tool.name if isinstance(tool, WebhookTool) else tool.type


def _mcp_definition(tool: McpTool, environ: Mapping[str, str]) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "type": "mcp",
        "server_label": tool.server_label,
        "server_url": tool.server_url,
        # A caller on the phone cannot approve a call: the service must not wait for one.
        "require_approval": "never",
    }
    if tool.allowed_tools is not None:
        definition["allowed_tools"] = list(tool.allowed_tools)
    headers = {name: environ.get(env, "") for name, env in tool.headers_from_env.items()}
    if headers:
        definition["headers"] = headers
    if tool.description:
        definition["server_description"] = tool.description
    return definition


def _tool_definition(
    tool: WebhookTool | TransferTool | EndCallTool | SendDtmfTool,
) -> dict[str, Any]:
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    if isinstance(tool, WebhookTool):
        parameters = tool.parameters
    elif isinstance(tool, TransferTool):
        parameters = {
            "type": "object",
            "properties": {
                "destination": {
                    "type": "string",
                    "enum": sorted(tool.targets),
                    "description": "Where to transfer the caller.",
                },
                "mode": {
                    "type": "string",
                    "enum": ["blind", "warm"],
                    "description": "blind: send the caller there now; warm: hold the caller, "
                    f"brief the person who answers, then connect them. Default {tool.mode}.",
                },
                "summary": {
                    "type": "string",
                    "maxLength": MAX_SUMMARY_CHARS,
                    "description": "Two or three sentences for the person taking the call: "
                    "who is calling and what they need.",
                },
            },
            "required": ["destination"],
        }
    elif isinstance(tool, SendDtmfTool):
        parameters = {
            "type": "object",
            "properties": {
                "digits": {
                    "type": "string",
                    "pattern": f"^[0-9*#A-D]{{1,{tool.max_digits}}}$",
                    "description": "The keys to press, in order (0-9, *, #, A-D).",
                }
            },
            "required": ["digits"],
        }
    return {
        "type": "function",
        "name": tool_name(tool),
        "description": tool.description,
        "parameters": parameters,
    }
