"""The decision webhook's request and answer (hooks/incoming.py), as tables: what the gateway
sends, which answers it follows, and why it refuses the others."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.config import WebhookTool
from gateway.config.agent import PREVIEW_VOICES, VOICES
from gateway.hooks.incoming import (
    DEFAULT_REJECT,
    MAX_ANSWER_BYTES,
    MAX_HEADER_CHARS,
    MAX_HEADERS,
    Accept,
    Redirect,
    Reject,
    UnusableAnswer,
    forwarded_headers,
    parse_answer,
    request_body,
    rules_for,
)

RULES = rules_for(["sales", "support"], VOICES)


def parse(answer: Any) -> Any:
    return parse_answer(json.dumps(answer).encode(), RULES)


def test_the_request_carries_the_call_and_only_the_headers_it_should() -> None:
    headers = {
        "via": "SIP/2.0/UDP 127.0.0.1",
        "x-customer-id": "42",
        "p-asserted-identity": "<sip:+15551234@carrier>",
        "diversion": "<sip:100@pbx>;reason=no-answer",
        "user-to-user": "00fa08;encoding=hex",
        "authorization": "Digest secret",
        "x-evil": "a\r\nInjected: yes",
    }
    facts = {"caller": "100", "caller_name": "Ann", "dialed": "2000", "to": "2000",
             "source": "127.0.0.1:5070", "transport": "udp"}  # fmt: skip
    body = json.loads(request_body("c1", facts, headers))
    assert body == {
        "call_id": "c1",
        **facts,
        "headers": {
            "x-customer-id": "42",
            "p-asserted-identity": "<sip:+15551234@carrier>",
            "diversion": "<sip:100@pbx>;reason=no-answer",
            "user-to-user": "00fa08;encoding=hex",
            "x-evil": "a Injected: yes",
        },
    }


def test_forwarded_headers_are_bounded_in_count_and_length() -> None:
    many = {f"x-h{i}": "v" * 1000 for i in range(100)}
    out = forwarded_headers(many)
    assert len(out) == MAX_HEADERS
    assert all(len(v) == MAX_HEADER_CHARS for v in out.values())


ACCEPTED = [
    ({"action": "accept"}, Accept()),
    (
        {"action": "accept", "profile": "sales", "variables": {"tier": "gold"},
         "instructions": "Hi ${tier}", "greeting": "Greet", "voice": "Cedar", "record": True,
         "metadata": {"crm_id": "A-1", "score": 0.5, "vip": True, "n": 3, "none": None}},
        Accept("sales",
               {"instructions": "Hi ${tier}", "greeting": "Greet", "voice": "cedar",
                "recording": True},
               {"tier": "gold"},
               {"crm_id": "A-1", "score": 0.5, "vip": True, "n": 3, "none": None}),
    ),
    ({"action": "accept", "profile": "default"}, Accept("default")),
    ({"action": "accept", "greeting": "  "}, Accept(None, {"greeting": None})),
    ({"action": "accept", "status": None, "target": None}, Accept()),
    ({"action": "reject"}, Reject(DEFAULT_REJECT, "Decline")),
    ({"action": "reject", "status": 486}, Reject(486, "Busy Here")),
    ({"action": "reject", "status": 699}, Reject(699, "Declined")),
    ({"action": "reject", "status": 499}, Reject(499, "Request Failed")),
    ({"action": "reject", "status": 480, "reason": "Closed today"}, Reject(480, "Closed today")),
    ({"action": "reject", "metadata": {"why": "blocked"}},
     Reject(603, "Decline", {"why": "blocked"})),
    ({"action": "redirect", "target": "sip:600@pbx.example"}, Redirect("sip:600@pbx.example")),
    ({"action": "redirect", "target": "sips:queue@10.0.0.5:5061;transport=tls"},
     Redirect("sips:queue@10.0.0.5:5061;transport=tls")),
]  # fmt: skip


@pytest.mark.parametrize(("answer", "decision"), ACCEPTED)
def test_answers_that_are_followed(answer: dict[str, Any], decision: Any) -> None:
    assert parse(answer) == decision


REFUSED = [
    ([], "not a JSON object"),
    ({}, "action: Field required"),
    ({"action": "transfer"}, "action: Input should be"),
    ({"action": "ACCEPT"}, "action: Input should be"),
    ({"action": "accept", "colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"action": "reject", "status": "486"}, "status: Input should be a valid integer"),
    ({"action": "reject", "status": 486.0}, "status: Input should be a valid integer"),
    ({"action": "reject", "status": True}, "status: Input should be a valid integer"),
    ({"action": "reject", "status": 302}, "status: Input should be greater than or equal to 400"),
    ({"action": "reject", "status": 200}, "status: Input should be greater than or equal to 400"),
    ({"action": "reject", "status": 700}, "status: Input should be less than or equal to 699"),
    ({"action": "reject", "reason": "Busy\r\nX-Injected: 1"}, "reason: control characters"),
    ({"action": "reject", "reason": "x" * 65}, "reason: String should have at most 64"),
    ({"action": "reject", "target": "sip:a@b"}, "target: not used with action reject"),
    ({"action": "accept", "status": 486}, "status: not used with action accept"),
    ({"action": "redirect", "profile": "sales", "target": "sip:a@b"}, "profile: not used"),
    ({"action": "redirect"}, "target: a redirect needs a target"),
    ({"action": "redirect", "target": "http://evil.example"}, "target: must be a sip: or sips:"),
    ({"action": "redirect", "target": "tel:+15551234"}, "target: must be a sip: or sips:"),
    ({"action": "redirect", "target": "sip:a@b\r\nX-Injected: 1"}, "target: spaces, control"),
    ({"action": "redirect", "target": "sip:a@b>;x=<sip:c@d"}, "target: spaces, control"),
    ({"action": "redirect", "target": "sip:a@b c"}, "target: spaces, control"),
    ({"action": "redirect", "target": 'sip:"a"@b'}, "target: spaces, control"),
    ({"action": "redirect", "target": "sip:a@bé.example"}, "target: spaces, control"),
    ({"action": "redirect", "target": "sip:a@bad_host!"}, "target: not a valid host"),
    ({"action": "redirect", "target": "sip:a@b:99999"}, "target:"),
    ({"action": "redirect", "target": "sip:" + "a" * 300}, "target: String should have at most"),
    ({"action": "redirect", "target": 5}, "target: Input should be a valid string"),
    ({"action": "accept", "profile": "billing"}, "profile: 'billing' is not a configured"),
    ({"action": "accept", "voice": "robot"}, "voice: 'robot' is not accepted"),
    ({"action": "accept", "record": "yes"}, "record: Input should be a valid boolean"),
    ({"action": "accept", "record": 1}, "record: Input should be a valid boolean"),
    ({"action": "accept", "instructions": ["a"]}, "instructions: Input should be a valid string"),
    ({"action": "accept", "instructions": "a\x00b"}, "instructions: control characters"),
    ({"action": "accept", "instructions": "x" * 20_001}, "instructions: String should have"),
    ({"action": "accept", "variables": {"n": 1}}, "variables.n: Input should be a valid string"),
    ({"action": "accept", "variables": {"a-b": "x"}}, "variables: key 'a-b' must be"),
    ({"action": "accept", "variables": {"1a": "x"}}, "variables: key '1a' must be"),
    ({"action": "accept", "variables": {"a": "x" * 1001}}, "variables.a: at most 1000"),
    ({"action": "accept", "variables": {"a": "\x1b[31m"}}, "variables.a: at most 1000"),
    ({"action": "accept", "variables": {f"v{i}": "x" for i in range(33)}},
     "variables: Dictionary should have at most 32"),
    ({"action": "accept", "variables": []}, "variables: Input should be a valid dictionary"),
    ({"action": "accept", "metadata": {"a": {"nested": 1}}}, "metadata.a"),
    ({"action": "accept", "metadata": {"a": [1]}}, "metadata.a"),
    ({"action": "accept", "metadata": {"a b": 1}}, "metadata: key 'a b' must be"),
    ({"action": "accept", "metadata": {"a": "x" * 1001}}, "metadata.a: at most 1000"),
    ({"action": "accept", "metadata": {f"k{i}": "x" * 999 for i in range(9)}},
     "metadata: larger than 8192 bytes"),
    ({"action": "accept", "tools": [{"type": "shell"}]}, "tools."),
    ({"action": "accept", "tools": [{"type": "webhook", "name": "x"}]}, "tools.0.webhook"),
    ({"action": "accept", "tools": [{"type": "webhook", "name": "lookup", "description": "d",
                                     "url": "http://127.0.0.1:9/x"}]},
     "127.0.0.1 is a loopback address"),
    ({"action": "accept", "tools": [{"type": "webhook", "name": "lookup", "description": "d",
                                     "url": "http://crm.example/x",
                                     "headers_from_env": {"Authorization": "TOKEN"}}]},
     "unencrypted"),
    ({"action": "accept", "tools": "end_call"}, "tools: Input should be a valid list"),
]  # fmt: skip


@pytest.mark.parametrize(("answer", "why"), REFUSED)
def test_answers_that_are_refused(answer: Any, why: str) -> None:
    with pytest.raises(UnusableAnswer) as info:
        parse(answer)
    assert why in str(info.value)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"action": "accept", "metadata": {"x": NaN}}', "NaN is not JSON"),
        (b'{"action": "accept", "metadata": {"x": Infinity}}', "Infinity is not JSON"),
        (b"[" * 100_000, f"larger than {MAX_ANSWER_BYTES} bytes"),
        (b"[" * 50_000, "not JSON"),  # deep nesting: a RecursionError, caught
        (b'{"action": "accept", "metadata": {"x": 1e999}}', "metadata.x: not a finite number"),
    ],
)
def test_bodies_that_are_not_answers(raw: bytes, why: str) -> None:
    with pytest.raises(UnusableAnswer) as info:
        parse_answer(raw, RULES)
    assert why in str(info.value)


def test_tools_are_validated_as_agent_tools_are() -> None:
    tools = [
        {"type": "end_call"},
        {"type": "webhook", "name": "lookup", "description": "Look up the order.",
         "url": "https://crm.example/order"},
        {"type": "transfer_call", "targets": {"sales": "sip:600@pbx.example"}},
    ]  # fmt: skip
    decision = parse({"action": "accept", "tools": tools})
    assert isinstance(decision, Accept)
    got = decision.overrides["tools"]
    assert [t.type for t in got] == ["end_call", "webhook", "transfer_call"]
    assert isinstance(got[1], WebhookTool) and got[1].timeout_s == 5.0


def test_a_preview_config_refuses_ga_only_voices() -> None:
    preview = rules_for([], PREVIEW_VOICES)
    with pytest.raises(UnusableAnswer, match="voice"):
        parse_answer(b'{"action": "accept", "voice": "marin"}', preview)
    decision = parse_answer(b'{"action": "accept", "voice": "alloy"}', preview)
    assert isinstance(decision, Accept) and decision.overrides == {"voice": "alloy"}
