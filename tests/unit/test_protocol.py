"""The dialects: every client event we build is valid for the official SDK models (GA and beta)."""

from __future__ import annotations

import base64
import json

import pytest

from gateway.config import parse_config
from gateway.realtime import protocol as rt
from tests.realtime_schema import validate_client_event, validate_preview_client_event

GA = rt.GaDialect()
PREVIEW = rt.PreviewDialect("2025-04-01-preview")


def agent(**overrides: object):
    return parse_config({"agent": overrides}).agent


@pytest.mark.parametrize(
    "audio_format,codec", [("pcm16", "PCMU"), ("g711", "PCMU"), ("g711", "PCMA")]
)
def test_session_update_is_valid(audio_format: str, codec: str) -> None:
    event = json.loads(GA.session_update(agent(greeting="hi"), audio_format, codec))
    validate_client_event(event)
    fmt = event["session"]["audio"]["input"]["format"]
    expected = {
        ("pcm16", "PCMU"): {"type": "audio/pcm", "rate": 24000},
        ("g711", "PCMU"): {"type": "audio/pcmu"},
        ("g711", "PCMA"): {"type": "audio/pcma"},
    }[(audio_format, codec)]
    assert fmt == expected
    assert event["session"]["audio"]["output"]["format"] == expected


def test_session_update_carries_agent_settings() -> None:
    cfg = agent(
        instructions="Be brief.",
        voice="cedar",
        turn_detection={"type": "semantic_vad", "eagerness": "high"},
        input_transcription={"model": "gpt-4o-transcribe", "language": "de"},
    )
    event = json.loads(GA.session_update(cfg, "pcm16", "PCMU"))
    validate_client_event(event)
    session = event["session"]
    assert session["instructions"] == "Be brief."
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert session["audio"]["input"]["turn_detection"]["eagerness"] == "high"
    assert session["audio"]["input"]["transcription"] == {
        "model": "gpt-4o-transcribe",
        "language": "de",
    }


def test_manual_turns_send_null_turn_detection() -> None:
    event = json.loads(GA.session_update(agent(turn_detection={"type": "none"}), "pcm16", "PCMU"))
    validate_client_event(event)
    assert event["session"]["audio"]["input"]["turn_detection"] is None


def test_append_is_valid_and_round_trips_audio() -> None:
    audio = bytes(range(256)) * 3
    event = json.loads(GA.append_audio(audio))
    validate_client_event(event)
    assert base64.b64decode(event["audio"]) == audio


def test_other_client_events_are_valid() -> None:
    for text in (
        GA.response_create(),
        GA.response_create("Greet the caller."),
        GA.response_cancel(),
        GA.response_cancel("resp_1"),
        GA.truncate("item_1", 1234),
    ):
        validate_client_event(json.loads(text))


def test_url_puts_deployment_in_model_parameter() -> None:
    assert (
        GA.url("wss://res.openai.azure.com/openai/v1/realtime", "my-dep")
        == "wss://res.openai.azure.com/openai/v1/realtime?model=my-dep"
    )
    assert GA.url("ws://127.0.0.1:9/rt?x=1", "a b") == "ws://127.0.0.1:9/rt?x=1&model=a+b"


def test_parse_dispatches_on_type() -> None:
    delta = GA.parse(
        json.dumps(
            {
                "type": "response.output_audio.delta",
                "event_id": "e",
                "response_id": "r",
                "item_id": "i",
                "output_index": 0,
                "content_index": 0,
                "delta": base64.b64encode(b"\x01\x02").decode(),
            }
        )
    )
    assert delta == rt.AudioDelta("r", "i", 0, b"\x01\x02")
    done = GA.parse(
        json.dumps(
            {
                "type": "response.done",
                "event_id": "e",
                "response": {
                    "id": "r",
                    "status": "cancelled",
                    "status_details": {"type": "cancelled", "reason": "turn_detected"},
                    "usage": {"total_tokens": 7},
                },
            }
        )
    )
    assert done == rt.ResponseDone("r", "cancelled", "turn_detected", {"total_tokens": 7})
    err = GA.parse(
        '{"type":"error","event_id":"e","error":{"type":"invalid_request_error",'
        '"code":"response_cancel_not_active","message":"no active response"}}'
    )
    assert isinstance(err, rt.ServiceError) and err.benign
    assert GA.parse('{"type":"rate_limits.updated","rate_limits":[]}') == rt.Other(
        "rate_limits.updated"
    )


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        '{"no":"type"}',
        '{"type":"response.output_audio.delta","response_id":"r"}',
        '{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"%%%"}',
        '{"type":"input_audio_buffer.speech_started","audio_start_ms":"x","item_id":"i"}',
    ],
)
def test_malformed_server_frames_raise_protocol_error(frame: str) -> None:
    with pytest.raises(rt.ProtocolError):
        GA.parse(frame)


def test_session_update_carries_noise_reduction_and_max_output_tokens() -> None:
    cfg = agent(noise_reduction="near_field", max_output_tokens=300)
    event = json.loads(GA.session_update(cfg, "pcm16", "PCMU"))
    validate_client_event(event)
    assert event["session"]["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
    assert event["session"]["max_output_tokens"] == 300
    default = json.loads(GA.session_update(agent(), "pcm16", "PCMU"))["session"]
    assert "noise_reduction" not in default["audio"]["input"]
    assert default["max_output_tokens"] == "inf"


def test_conversation_items_are_valid_ga() -> None:
    for role in ("user", "assistant", "system"):
        event = json.loads(GA.conversation_item(role, "Hello there", item_id="item_x1"))
        validate_client_event(event)
        assert event["item"]["role"] == role and event["item"]["id"] == "item_x1"
    assistant = json.loads(GA.conversation_item("assistant", "Hi"))
    assert assistant["item"]["content"] == [{"type": "output_text", "text": "Hi"}]


ENCODED = [
    (rt.CreateResponse(), {"type": "response.create"}),
    (
        rt.CreateResponse("Greet."),
        {"type": "response.create", "response": {"instructions": "Greet."}},
    ),
    (rt.CancelResponse(), {"type": "response.cancel"}),
    (rt.CancelResponse("resp_1"), {"type": "response.cancel", "response_id": "resp_1"}),
    (
        rt.Truncate("item_1", 1234, 1),
        {
            "type": "conversation.item.truncate",
            "item_id": "item_1",
            "content_index": 1,
            "audio_end_ms": 1234,
        },
    ),
    (
        rt.AddText("user", "[DTMF 12#]"),
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "[DTMF 12#]"}],
            },
        },
    ),
    (
        rt.FunctionOutput("call_1", '{"ok": true}'),
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'},
        },
    ),
]


@pytest.mark.parametrize(("command", "expected"), ENCODED)
def test_typed_commands_encode_to_valid_events_in_both_dialects(command, expected) -> None:
    assert json.loads(GA.encode(command)) == expected
    validate_client_event(json.loads(GA.encode(command)))
    validate_preview_client_event(json.loads(PREVIEW.encode(command)))
    with pytest.raises(TypeError):
        GA.encode("response.create")  # type: ignore[arg-type]


# --- the preview dialect ------------------------------------------------------------------------


def test_preview_url_has_api_version_and_deployment_and_beta_header() -> None:
    assert PREVIEW.url("wss://res.openai.azure.com/openai/realtime", "my-dep") == (
        "wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview"
        "&deployment=my-dep"
    )
    assert PREVIEW.handshake_headers() == {"OpenAI-Beta": "realtime=v1"}
    assert GA.handshake_headers() == {}


@pytest.mark.parametrize(
    "audio_format,codec,wire",
    [("pcm16", "PCMU", "pcm16"), ("g711", "PCMU", "g711_ulaw"), ("g711", "PCMA", "g711_alaw")],
)
def test_preview_session_update_is_flat_and_valid(audio_format: str, codec: str, wire: str) -> None:
    cfg = agent(
        instructions="Be brief.",
        voice="verse",
        turn_detection={"type": "server_vad", "silence_duration_ms": 400},
        input_transcription={"model": "whisper-1", "language": "fr"},
        noise_reduction="far_field",
        max_output_tokens=1000,
    )
    event = json.loads(PREVIEW.session_update(cfg, audio_format, codec))
    validate_preview_client_event(event)
    session = event["session"]
    assert "type" not in session and "audio" not in session
    assert (session["input_audio_format"], session["output_audio_format"]) == (wire, wire)
    assert session["voice"] == "verse" and session["instructions"] == "Be brief."
    assert session["turn_detection"]["silence_duration_ms"] == 400
    assert session["input_audio_transcription"] == {"model": "whisper-1", "language": "fr"}
    assert session["input_audio_noise_reduction"] == {"type": "far_field"}
    assert session["max_response_output_tokens"] == 1000
    assert session["modalities"] == ["text", "audio"]
    with pytest.raises(ValueError):  # the flat shape is not GA
        validate_client_event(event)


def test_preview_semantic_vad_and_manual_turns_are_valid() -> None:
    for td in ({"type": "semantic_vad", "eagerness": "low"}, {"type": "none"}):
        event = json.loads(PREVIEW.session_update(agent(turn_detection=td), "pcm16", "PCMU"))
        validate_preview_client_event(event)


def test_preview_other_client_events_are_valid() -> None:
    for text in (
        PREVIEW.append_audio(b"\x00" * 320),
        PREVIEW.response_create(),
        PREVIEW.response_create("Greet the caller."),
        PREVIEW.response_cancel("resp_1"),
        PREVIEW.truncate("item_1", 10),
        PREVIEW.conversation_item("user", "What time is it?"),
        PREVIEW.conversation_item("assistant", "Noon.", item_id="item_2"),
    ):
        validate_preview_client_event(json.loads(text))
    assistant = json.loads(PREVIEW.conversation_item("assistant", "Noon."))
    assert assistant["item"]["content"] == [{"type": "text", "text": "Noon."}]


def test_preview_parse_reads_the_preview_event_names() -> None:
    delta = {
        "event_id": "e",
        "response_id": "r",
        "item_id": "i",
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(b"\x05").decode(),
    }
    ev = PREVIEW.parse(json.dumps({"type": "response.audio.delta", **delta}))
    assert ev == rt.AudioDelta("r", "i", 0, b"\x05")
    assert PREVIEW.parse(
        '{"type":"response.audio.done","response_id":"r","item_id":"i"}'
    ) == rt.AudioDone("r", "i")
    assert PREVIEW.parse(
        '{"type":"response.audio_transcript.done","item_id":"i","transcript":"hi"}'
    ) == rt.Transcript("agent", "i", "hi")
    # The GA names are not the preview service's: they are not taken for audio.
    assert PREVIEW.parse(json.dumps({"type": "response.output_audio.delta", **delta})) == rt.Other(
        "response.output_audio.delta"
    )
    assert GA.parse(json.dumps({"type": "response.audio.delta", **delta})) == rt.Other(
        "response.audio.delta"
    )


def test_dialect_for() -> None:
    assert isinstance(rt.dialect_for("ga"), rt.GaDialect)
    preview = rt.dialect_for("preview", "2025-04-01-preview")
    assert isinstance(preview, rt.PreviewDialect) and preview.api_version == "2025-04-01-preview"
    with pytest.raises(ValueError):
        rt.dialect_for("preview")


@pytest.mark.parametrize("kind", ["near_field", "far_field", None])
def test_session_update_carries_noise_reduction_only_when_set(kind: str | None) -> None:
    event = json.loads(GA.session_update(agent(noise_reduction=kind), "pcm16", "PCMU"))
    validate_client_event(event)
    audio_in = event["session"]["audio"]["input"]
    if kind is None:
        assert "noise_reduction" not in audio_in  # a partial update leaves the service's own
    else:
        assert audio_in["noise_reduction"] == {"type": kind}


def test_agent_transcript_delta_and_audio_done_content_index() -> None:
    delta = GA.parse(
        '{"type":"response.output_audio_transcript.delta","response_id":"r","item_id":"i",'
        '"output_index":0,"content_index":0,"delta":"Hel"}'
    )
    assert delta == rt.TranscriptDelta("i", "Hel")
    done = GA.parse(
        '{"type":"response.output_audio.done","response_id":"r","item_id":"i",'
        '"output_index":0,"content_index":1}'
    )
    assert done == rt.AudioDone("r", "i", 1)
    preview = rt.PreviewDialect("2025-04-01-preview").parse(
        '{"type":"response.audio_transcript.delta","response_id":"r","item_id":"i",'
        '"output_index":0,"content_index":0,"delta":"lo"}'
    )
    assert preview == rt.TranscriptDelta("i", "lo")
