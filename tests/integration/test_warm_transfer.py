"""Warm transfers through real peers: SIPp as the caller's PBX (held by our re-INVITE, then
taking or refusing the REFER with Replaces), baresip or SIPp as the human's phone, the
embedded agent as the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.agent import EmbeddedRealtimeServer
from tests.realtime_schema import validate_client_event

from .gateway_proc import GatewayProcess
from .rtp_caller import RtpCaller, voice
from .warm_scenarios import busy_target, held_caller_sipp

pytestmark = pytest.mark.integration

HOSTILE = "Anna wants a refund\\r\\nX-Evil: injected\\r\\n\\r\\nINVITE sip:evil"


def config(fake: EmbeddedRealtimeServer, target: str, **transfer: Any) -> dict[str, Any]:
    tool = {"type": "transfer_call", "targets": {"sales": target}, "mode": "warm"}
    return {
        "realtime": {"url": fake.url, "auth": {"method": "none"}},
        "agent": {"tools": [tool], "transfer": transfer},
    }


def sent(fake: EmbeddedRealtimeServer, kind: str) -> list[dict[str, Any]]:
    events = fake.sessions[0].received
    for event in events:
        validate_client_event(event)
    return [e for e in events if e["type"] == kind]


async def test_busy_target_caller_comes_off_hold_and_model_is_told(tmp_path: Path) -> None:
    """(iii) The target answers 486: the caller is held (re-INVITE sendonly) then back
    (sendrecv), the model hears why; (iv) the hostile summary reached the target's INVITE on
    one line, User-to-User hex-encoded."""
    arguments = json.dumps({"destination": "sales", "mode": "warm", "summary": "x"})
    arguments = arguments.replace('"x"', f'"{HOSTILE}"')
    fake = EmbeddedRealtimeServer(function_calls=[("transfer_call", arguments)])
    target = busy_target(tmp_path / "target")
    headers = {"X-Call-Summary": "${summary}", "User-to-User": "${summary}"}
    async with fake, RtpCaller() as phone, target:
        cfg = config(fake, target.uri("600"), headers=headers)
        async with GatewayProcess(tmp_path, cfg) as gateway:
            sipp = held_caller_sipp(tmp_path / "caller", gateway.port, phone.port, None)
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 150.0))
                event = await gateway.wait_for("call.transfer", timeout=40)
                assert await sipp.wait(30) == 0, sipp.report()
                assert await target.wait(15) == 0, target.report()
                await gateway.wait_for("call.ended", timeout=15)
    assert event["mode"] == "warm" and event["outcome"] == "target_busy"
    assert event["ok"] is False
    outputs = sent(fake, "conversation.item.create")
    [output] = [e for e in outputs if e["item"]["type"] == "function_call_output"]
    result = json.loads(output["item"]["output"])
    assert "busy" in result["error"] and "off hold" in result["error"]
    invite = target.messages_path.read_text()
    summary_lines = [line for line in invite.splitlines() if line.startswith("X-Call-Summary:")]
    assert summary_lines == ["X-Call-Summary: Anna wants a refund X-Evil: injected INVITE sip:evil"]
    assert not any(line.startswith("X-Evil") for line in invite.splitlines())
    [uui] = [line for line in invite.splitlines() if line.lower().startswith("user-to-user:")]
    hex_value, param = uui.split(":", 1)[1].strip().split(";")
    assert param == "encoding=hex"
    assert bytes.fromhex(hex_value).decode() == "Anna wants a refund X-Evil: injected INVITE sip:evil"
    caller = sipp.messages_path.read_text()
    ours = [line.split()[2] for line in caller.splitlines() if line.startswith("o=- ")]
    assert ours == ["0", "1", "2"]  # answer, hold (sendonly), resume: o= version moves
