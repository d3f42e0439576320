"""What a webhook tool learns about its call: the decision webhook's variables and metadata
as the router kept them, and only the INVITE's X- headers, bounded as for the hook."""

from __future__ import annotations

from gateway.bridge.setup import tool_call_data
from gateway.config import parse_config
from gateway.hooks.incoming import MAX_HEADER_CHARS
from gateway.routing import CallInfo, Router


def test_a_tool_gets_x_headers_variables_and_metadata() -> None:
    info = CallInfo(
        dialed="100",
        caller="alice",
        headers={
            "x-account": "A-42",
            "x-long": "v" * 5000,
            "x-ctl": "a\r\nInjected: yes",
            "subject": "not passed on",
            "p-asserted-identity": "<sip:alice@pbx>",
        },
    )
    route = Router(parse_config({})).select(
        info, variables={"tier": "gold"}, metadata={"crm_id": "A-17", "vip": True}
    )
    data = tool_call_data("call-1", info, route)
    assert data["variables"] == {"tier": "gold"}
    assert data["metadata"] == {"crm_id": "A-17", "vip": True}
    assert set(data["headers"]) == {"x-account", "x-long", "x-ctl"}
    assert data["headers"]["x-account"] == "A-42"
    assert len(data["headers"]["x-long"]) == MAX_HEADER_CHARS
    assert "\n" not in data["headers"]["x-ctl"] and "\r" not in data["headers"]["x-ctl"]
    assert (data["call_id"], data["dialed"], data["profile"]) == ("call-1", "100", "default")


def test_without_a_decision_the_tool_gets_empty_variables_and_metadata() -> None:
    info = CallInfo(dialed="100")
    data = tool_call_data("c", info, Router(parse_config({})).select(info))
    assert (data["headers"], data["variables"], data["metadata"]) == ({}, {}, {})
