"""The GA dialect: every client event we build is valid for the official SDK models."""

from __future__ import annotations

import base64
import json

import pytest

from gateway.config import parse_config
from gateway.realtime import protocol as rt
from tests.realtime_schema import validate_client_event

GA = rt.GaDialect()


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
