"""The Realtime wire protocol field by field: what each client event carries exactly, what each
server event defaults to when a field is absent, and the refusals' wording.

test_protocol.py validates shapes against the SDK models; a wrong value of the right type
(a 0 where the index was 1, "text" where "output_text" belongs) passes those, not these.
"""

from __future__ import annotations

import base64
import json

import pytest

from gateway.config import parse_config
from gateway.realtime import protocol as rt

GA = rt.GaDialect()
PREVIEW = rt.PreviewDialect("2025-04-01-preview")


def agent(**overrides: object):
    return parse_config({"agent": overrides}).agent


def test_bytes_per_ms() -> None:
    assert rt.bytes_per_ms("g711") == 8
    assert rt.bytes_per_ms("pcm16") == 48
    assert rt.PCM16_RATE == 24_000


def test_dialect_names_and_handshake_headers() -> None:
    assert (GA.name, PREVIEW.name) == ("ga", "preview")
    assert GA.handshake_headers() == {}
    assert PREVIEW.handshake_headers() == {"OpenAI-Beta": "realtime=v1"}


def test_preview_url_keeps_an_existing_query() -> None:
    assert PREVIEW.url("wss://h/openai/realtime", "d") == (
        "wss://h/openai/realtime?api-version=2025-04-01-preview&deployment=d"
    )
    assert PREVIEW.url("wss://h/rt?x=1#frag", "d") == (
        "wss://h/rt?x=1&api-version=2025-04-01-preview&deployment=d"
    )
    assert GA.url("wss://h/rt#frag", "d") == "wss://h/rt?model=d"


def test_dialect_for_refusals_name_the_setting() -> None:
    with pytest.raises(ValueError, match=r"preview needs realtime\.api_version"):
        rt.dialect_for("preview", "")
    with pytest.raises(ValueError, match=r"realtime.protocol 'beta' is not supported"):
        rt.dialect_for("beta", "x")


def test_audio_formats() -> None:
    assert GA.audio_format("g711", "PCMU") == {"type": "audio/pcmu"}
    assert GA.audio_format("g711", "PCMA") == {"type": "audio/pcma"}
    assert GA.audio_format("pcm16", "PCMA") == {"type": "audio/pcm", "rate": 24000}
    assert PREVIEW.audio_format("g711", "PCMU") == "g711_ulaw"
    assert PREVIEW.audio_format("g711", "PCMA") == "g711_alaw"
    assert PREVIEW.audio_format("pcm16", "PCMU") == "pcm16"


def test_ga_session_update_exact() -> None:
    cfg = agent(instructions="Hi.", voice="cedar", max_output_tokens=300)
    event = json.loads(GA.session_update(cfg, "g711", "PCMA"))
    assert event["type"] == "session.update"
    session = event["session"]
    assert session["type"] == "realtime"
    assert session["output_modalities"] == ["audio"]
    assert session["max_output_tokens"] == 300
    assert session["audio"]["output"] == {"format": {"type": "audio/pcma"}, "voice": "cedar"}
    assert "tools" not in session and "tool_choice" not in session
    assert "transcription" not in session["audio"]["input"]


def test_transcription_without_language_has_only_the_model() -> None:
    cfg = agent(input_transcription={"model": "whisper-1"})
    session = json.loads(GA.session_update(cfg, "pcm16", "PCMU"))["session"]
    assert session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    flat = json.loads(PREVIEW.session_update(cfg, "pcm16", "PCMU"))["session"]
    assert flat["input_audio_transcription"] == {"model": "whisper-1"}


def test_preview_session_update_exact() -> None:
    cfg = agent(
        instructions="Hi.",
        voice="alloy",
        max_output_tokens=200,
        noise_reduction="far_field",
        turn_detection={"type": "none"},
    )
    session = json.loads(PREVIEW.session_update(cfg, "g711", "PCMU"))["session"]
    assert session["modalities"] == ["text", "audio"]
    assert session["voice"] == "alloy" and session["instructions"] == "Hi."
    assert session["input_audio_format"] == session["output_audio_format"] == "g711_ulaw"
    assert session["turn_detection"] is None
    assert session["max_response_output_tokens"] == 200
    assert session["input_audio_noise_reduction"] == {"type": "far_field"}
    assert "input_audio_transcription" not in session and "tools" not in session


TOOLS = [
    {
        "type": "webhook",
        "name": "lookup",
        "description": "Look up.",
        "url": "https://crm.example/x",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
    {"type": "end_call", "description": "Hang up."},
    {
        "type": "transfer_call",
        "description": "Transfer.",
        "targets": {"support": "sip:2@pbx.example", "sales": "sip:1@pbx.example"},
    },
]


@pytest.mark.parametrize("dialect", [GA, PREVIEW])
def test_tool_definitions_exact(dialect) -> None:
    session = json.loads(dialect.session_update(agent(tools=TOOLS), "pcm16", "PCMU"))["session"]
    assert session["tool_choice"] == "auto"
    lookup, end, transfer = session["tools"]
    assert lookup == {
        "type": "function",
        "name": "lookup",
        "description": "Look up.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    assert end == {
        "type": "function",
        "name": "end_call",
        "description": "Hang up.",
        "parameters": {"type": "object", "properties": {}},
    }
    assert transfer["name"] == "transfer_call"
    assert transfer["parameters"] == {
        "type": "object",
        "properties": {
            "destination": {
                "type": "string",
                "enum": ["sales", "support"],
                "description": "Where to transfer the caller.",
            },
            "mode": {
                "type": "string",
                "enum": ["blind", "warm"],
                "description": "blind: send the caller there now; warm: hold the caller, "
                "brief the person who answers, then connect them. Default blind.",
            },
            "summary": {
                "type": "string",
                "maxLength": 1000,
                "description": "Two or three sentences for the person taking the call: "
                "who is calling and what they need.",
            },
        },
        "required": ["destination"],
    }


def test_conversation_items_exact() -> None:
    user = json.loads(GA.conversation_item("user", "hello", "it_1"))
    assert user == {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "id": "it_1",
            "content": [{"type": "input_text", "text": "hello"}],
        },
    }
    system = json.loads(GA.conversation_item("system", "note"))["item"]
    assert "id" not in system and system["content"][0]["type"] == "input_text"
    assistant = json.loads(GA.conversation_item("assistant", "said"))["item"]
    assert assistant["content"] == [{"type": "output_text", "text": "said"}]
    preview = json.loads(PREVIEW.conversation_item("assistant", "said"))["item"]
    assert preview["content"] == [{"type": "text", "text": "said"}]


def test_function_output_and_responses_exact() -> None:
    assert json.loads(GA.function_output("call_1", '{"ok":true}')) == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"ok":true}'},
    }
    assert json.loads(GA.response_create()) == {"type": "response.create"}
    assert json.loads(GA.response_create("Say bye.")) == {
        "type": "response.create",
        "response": {"instructions": "Say bye."},
    }
    assert json.loads(GA.response_cancel()) == {"type": "response.cancel"}
    assert json.loads(GA.response_cancel("resp_9")) == {
        "type": "response.cancel",
        "response_id": "resp_9",
    }
    assert GA.append_audio(b"\x00\xff") == (
        '{"type":"input_audio_buffer.append","audio":"'
        + base64.b64encode(b"\x00\xff").decode()
        + '"}'
    )
    assert "é" in GA.conversation_item("user", "é")  # not escaped: ensure_ascii off
    assert ", " not in GA.response_cancel("r")  # compact separators


def test_truncate_exact() -> None:
    text = GA.truncate("item_1", 1234.9, 2)
    assert json.loads(text) == {
        "type": "conversation.item.truncate",
        "item_id": "item_1",
        "content_index": 2,
        "audio_end_ms": 1234,
    }
    assert json.loads(GA.truncate("i", 5))["content_index"] == 0
    assert GA.encode(rt.Truncate("item_1", 1234, 2)) == text


def parse(event: dict, dialect=GA):
    return dialect.parse(json.dumps(event))


def test_server_events_exact() -> None:
    assert parse({"type": "session.created", "session": {"id": "s"}}) == rt.SessionReady(
        {"id": "s"}, True
    )
    assert parse({"type": "session.updated", "session": {}}) == rt.SessionReady({}, False)
    assert parse(
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 120, "item_id": "i"}
    ) == rt.SpeechStarted(120, "i")
    assert parse(
        {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900, "item_id": "i"}
    ) == rt.SpeechStopped(900, "i")
    assert parse({"type": "response.created", "response": {"id": "r"}}) == rt.ResponseStarted("r")
    assert parse(
        {"type": "conversation.item.truncated", "item_id": "i", "audio_end_ms": 40}
    ) == rt.ItemTruncated("i", 40)
    assert parse(
        {"type": "response.output_audio_transcript.done", "item_id": "i", "transcript": "Hi"}
    ) == rt.Transcript("agent", "i", "Hi")
    assert parse(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "c",
            "transcript": "Hello",
        }
    ) == rt.Transcript("caller", "c", "Hello")


def test_server_event_defaults_for_absent_fields() -> None:
    delta = parse(
        {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": ""}
    )
    assert delta == rt.AudioDelta("r", "i", 0, b"")
    assert parse(
        {"type": "response.output_audio.done", "response_id": "r", "item_id": "i"}
    ) == rt.AudioDone("r", "i", 0)
    assert parse(
        {"type": "response.output_audio_transcript.delta", "item_id": "i", "delta": None}
    ) == rt.TranscriptDelta("i", "")
    assert parse(
        {"type": "response.output_audio_transcript.done", "item_id": "i"}
    ) == rt.Transcript("agent", "i", "")
    assert parse(
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": "c"}
    ) == rt.Transcript("caller", "c", "")
    assert parse({"type": "response.done", "response": {}}) == rt.ResponseDone("", "", None, {})
    assert parse(
        {"type": "response.done", "response": {"id": "r", "status": "completed", "usage": None}}
    ) == rt.ResponseDone("r", "completed", None, {})
    assert parse({"type": "error"}) == rt.ServiceError(None, "", None, None)


def test_error_fields_and_benign_codes() -> None:
    err = parse(
        {
            "type": "error",
            "error": {"type": "server_error", "code": "x", "message": 42, "event_id": "ev"},
        }
    )
    assert err == rt.ServiceError("x", "42", "server_error", "ev")
    assert not err.benign
    assert rt.BENIGN_ERRORS == {"response_cancel_not_active"}


def test_function_call_items() -> None:
    call = parse(
        {
            "type": "response.output_item.done",
            "response_id": "r",
            "item": {
                "type": "function_call",
                "id": "it",
                "call_id": "c",
                "name": "lookup",
                "arguments": '{"q":1}',
            },
        }
    )
    assert call == rt.FunctionCall("r", "it", "c", "lookup", '{"q":1}')
    bare = parse(
        {
            "type": "response.output_item.done",
            "item": {"type": "function_call", "call_id": "c", "name": "end_call", "arguments": ""},
        }
    )
    assert bare == rt.FunctionCall("", "", "c", "end_call", "{}")
    message = parse({"type": "response.output_item.done", "item": {"type": "message"}})
    assert message == rt.Other("response.output_item.done")
    with pytest.raises(rt.ProtocolError, match=r"malformed response\.output_item\.done event"):
        parse({"type": "response.output_item.done", "item": {"type": "function_call"}})


def test_parse_refusals_say_why() -> None:
    with pytest.raises(rt.ProtocolError, match="server sent invalid JSON"):
        GA.parse("{")
    with pytest.raises(rt.ProtocolError, match="server sent invalid JSON"):
        GA.parse(b"\xff\xfe{")
    with pytest.raises(rt.ProtocolError, match="server event has no type"):
        GA.parse('{"type": 5}')
    with pytest.raises(rt.ProtocolError, match=r"malformed session\.created event"):
        GA.parse('{"type": "session.created"}')
    with pytest.raises(rt.ProtocolError, match=r"malformed response\.created"):
        GA.parse('{"type": "response.created", "response": null}')


def test_preview_only_knows_its_own_audio_names() -> None:
    event = {"type": "response.output_audio.done", "response_id": "r", "item_id": "i"}
    assert parse(event, PREVIEW) == rt.Other("response.output_audio.done")
    event["type"] = "response.audio.done"
    assert parse(event, PREVIEW) == rt.AudioDone("r", "i", 0)
    assert parse(event) == rt.Other("response.audio.done")
    assert parse({"type": "error"}, PREVIEW) == rt.ServiceError(None, "")


def test_a_text_item_keeps_the_id_it_is_given() -> None:
    """The replay after a reconnect names its items; encode passes the id through."""
    event = json.loads(GA.encode(rt.AddText("assistant", "Noon.", item_id="item_7")))
    assert event["item"]["id"] == "item_7"
    assert "id" not in json.loads(GA.encode(rt.AddText("user", "[DTMF 1]")))["item"]


def test_refusals_name_what_was_wrong_word_for_word() -> None:
    with pytest.raises(TypeError) as info:
        GA.encode("response.create")  # type: ignore[arg-type]
    assert str(info.value) == "not a client command: 'response.create'"
    with pytest.raises(rt.ProtocolError) as parsed:
        GA.parse("[]")
    assert str(parsed.value) == "server event has no type"


def test_a_preview_dialect_without_a_version_is_refused_by_name() -> None:
    with pytest.raises(ValueError) as info:
        rt.dialect_for("preview", "")
    assert str(info.value) == "realtime.protocol preview needs realtime.api_version"
