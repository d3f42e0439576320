"""The control API's OpenAPI 3.1 document, built from the same route table and request
models the server uses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .requests import DtmfRequest, PlaceCallRequest, SayRequest, TransferRequest

PROBLEM = {"$ref": "#/components/schemas/Problem"}
CALL_ID = {
    "name": "call_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
    "description": "The gateway's call id (call_id in logs, records and events).",
}

# (method, path, summary, request model, success status, success schema reference)
OPERATIONS: list[tuple[str, str, str, type[BaseModel] | None, int, str | None]] = [
    ("get", "/v1/calls", "The calls in progress", None, 200, "CallList"),
    ("post", "/v1/calls", "Place an outbound call", PlaceCallRequest, 202, "Placed"),
    ("get", "/v1/calls/{call_id}", "One call in progress", None, 200, "Call"),
    (
        "post",
        "/v1/calls/{call_id}/hangup",
        "Hang up the call",
        None,
        202,
        None,
    ),
    (
        "post",
        "/v1/calls/{call_id}/transfer",
        "Transfer: blind (REFER) or warm (hold, brief the human, join)",
        TransferRequest,
        200,
        "Done",
    ),
    ("post", "/v1/calls/{call_id}/say", "Speak a text, or tell the model", SayRequest, 202, None),
    ("post", "/v1/calls/{call_id}/dtmf", "Send keys to the caller", DtmfRequest, 202, None),
    ("get", "/v1/openapi.json", "This document", None, 200, None),
]

_CALL = {
    "type": "object",
    "required": ["id", "sip_call_id", "state", "caller", "dialed", "received_at"],
    "properties": {
        "id": {"type": "string"},
        "sip_call_id": {"type": "string"},
        "state": {"enum": ["setting_up", "answered", "ending"]},
        "caller": {"type": "string"},
        "callee": {"type": "string"},
        "dialed": {"type": "string"},
        "source": {"type": "string"},
        "profile": {"type": ["string", "null"]},
        "codec": {"type": ["string", "null"]},
        "direction": {"enum": ["inbound", "outbound"]},
        "received_at": {"type": "string", "format": "date-time"},
        "answered_at": {"type": ["string", "null"], "format": "date-time"},
        "duration_s": {"type": "number"},
        "last_turns": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "role": {"enum": ["caller", "agent"]},
                    "text": {"type": "string"},
                    "at": {"type": "string"},
                },
            },
        },
    },
}
_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details (application/problem+json).",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
    "Call": _CALL,
    "CallList": {
        "type": "object",
        "required": ["calls"],
        "properties": {"calls": {"type": "array", "items": {"$ref": "#/components/schemas/Call"}}},
    },
    "Placed": {
        "type": "object",
        "description": "The call is being placed; its outcome comes as events "
        "(call.answered or call.failed, then call.ended).",
        "required": ["id", "sip_call_id"],
        "properties": {"id": {"type": "string"}, "sip_call_id": {"type": "string"}},
    },
    "Done": {
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"type": "string"}},
    },
}


def _operation(
    path: str, summary: str, body: type[BaseModel] | None, status: int, schema: str | None
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "401": {"description": "No or wrong bearer token", "content": _problem()},
        "429": {
            "description": "This address was refused api.max_failures times: shut out for "
            "api.block_s (Retry-After)",
            "content": _problem(),
        },
    }
    if schema is None:
        responses[str(status)] = {"description": "Accepted" if status == 202 else "OK"}
    else:
        ref = {"$ref": f"#/components/schemas/{schema}"}
        responses[str(status)] = {
            "description": "OK",
            "content": {"application/json": {"schema": ref}},
        }
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if "{call_id}" in path:
        operation["parameters"] = [CALL_ID]
        responses["404"] = {"description": "No such call in progress", "content": _problem()}
        responses["409"] = {
            "description": "Not possible in the call's state",
            "content": _problem(),
        }
    if path == "/v1/calls" and body is not None:
        responses["202"]["description"] = "Being placed"
        for code, why in (
            ("403", "The destination or caller ID is not allowed (sip.outbound)"),
            ("409", "Outbound calls are not configured (sip.outbound)"),
            (
                "429",
                "Too many outbound calls now (max_concurrent, max_per_minute), or this "
                "address was shut out (api.max_failures)",
            ),
            ("503", "The gateway is stopping"),
        ):
            responses[code] = {"description": why, "content": _problem()}
    if path.endswith("/transfer"):
        responses["502"] = {
            "description": "The far end refused the transfer",
            "content": _problem(),
        }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body.model_json_schema()}},
        }
        responses["400"] = {"description": "A body the API does not accept", "content": _problem()}
        responses["413"] = {"description": "A body over 16 KiB", "content": _problem()}
    return operation


def _problem() -> dict[str, Any]:
    return {"application/problem+json": {"schema": PROBLEM}}


def document(version: str) -> dict[str, Any]:
    """The whole document, as served at /v1/openapi.json."""
    paths: dict[str, Any] = {}
    for method, path, summary, body, status, schema in OPERATIONS:
        operation = _operation(path, summary, body, status, schema)
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "sip-realtime-gateway control API", "version": version},
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
