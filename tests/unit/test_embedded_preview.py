"""The embedded agent speaking the preview (beta) dialect, over real sockets on 127.0.0.1.

Every server event received is validated strictly against the SDK's *beta* server union, and
every client event sent (except the deliberately bad ones) against the beta client union; a GA
event name or shape in either direction fails the test.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.agent import ECHO_TRANSCRIPT, EmbeddedRealtimeServer
from tests.realtime_schema import validate_preview_client_event, validate_preview_server_event
from tests.unit.test_embedded import Client, as_pcm, best_ncc, noise, pcm, refused, speechlike

TIMEOUT = 5.0
QUERY = "?api-version=2025-04-01-preview&deployment=my-realtime"


class PreviewClient(Client):
    """The GA test client, validating against the beta models instead."""

    validate_client = staticmethod(validate_preview_client_event)
    validate_server = staticmethod(validate_preview_server_event)


@pytest.fixture
async def server():
    async with EmbeddedRealtimeServer(burst_speed=40.0) as srv:
        yield srv
    assert all(s.closed and not s.tasks for s in srv.sessions)


async def open_preview(url: str, **kwargs: Any) -> PreviewClient:
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(url, **kwargs)
    client = PreviewClient(ws)
    created = await client.until("session.created")
    assert created["session"]["voice"] == "alloy"
    assert created["session"]["input_audio_format"] == "pcm16"
    return client


async def test_azure_preview_path_speaks_preview(server):
    client = await open_preview(server.preview_url + QUERY)
    session = server.sessions[0]
    assert (session.dialect, session.model) == ("preview", "my-realtime")
    await client.send(
        {
            "type": "session.update",
            "session": {
                "modalities": ["text", "audio"],
                "instructions": "Echo.",
                "voice": "verse",
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
                "input_audio_transcription": {"model": "whisper-1"},
                "input_audio_noise_reduction": {"type": "near_field"},
                "max_response_output_tokens": 500,
            },
        }
    )
    updated = (await client.until("session.updated"))["session"]
    assert updated["voice"] == "verse" and updated["instructions"] == "Echo."
    assert updated["turn_detection"]["silence_duration_ms"] == 400
    assert updated["input_audio_noise_reduction"] == {"type": "near_field"}
    assert updated["max_response_output_tokens"] == 500
    assert "audio" not in updated and "type" not in updated

    speech = pcm(speechlike(1.2))
    await client.append(pcm(noise(0.4), speech, noise(0.9)))
    await client.until("input_audio_buffer.speech_stopped")
    await client.until("conversation.item.input_audio_transcription.completed")
    done = await client.until("response.done")
    rid = done["response"]["id"]
    assert done["response"]["modalities"] == ["text", "audio"]
    assert done["response"]["output"][0]["content"][0]["type"] == "audio"
    types = {e["type"] for e in client.events}
    assert {
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.done",
    } <= types
    assert "conversation.item.created" in types
    assert not {t for t in types if "output_audio" in t or t.startswith("conversation.item.add")}
    transcript = next(e for e in client.events if e["type"] == "response.audio_transcript.done")
    assert transcript["transcript"] == ECHO_TRANSCRIPT
    echo = b"".join(
        base64.b64decode(e["delta"])
        for e in client.events
        if e["type"] == "response.audio.delta" and e["response_id"] == rid
    )
    assert best_ncc(as_pcm(echo), speech) >= 0.95
    await client.ws.close()


async def test_openai_beta_header_selects_preview(server):
    base = server.url.replace("/openai/v1/realtime", "/v1/realtime")
    client = await open_preview(
        base + "?model=gpt-realtime", additional_headers={"OpenAI-Beta": "realtime=v1"}
    )
    assert server.sessions[0].dialect == "preview"
    await client.ws.close()
    # Without the header the same path speaks GA.
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(base + "?model=gpt-realtime")
    created = json.loads(await ws.recv())
    assert created["session"]["type"] == "realtime" and "audio" in created["session"]
    assert server.sessions[1].dialect == "ga"
    await ws.close()


async def test_preview_handshake_needs_api_version_and_deployment(server):
    for query in ("?deployment=x", "?api-version=2025-04-01-preview"):
        exc = await refused(server.preview_url + query)
        assert exc.response.status_code == 400


async def test_preview_refuses_ga_values_and_keeps_the_session(server):
    client = await open_preview(server.preview_url + QUERY)
    bad = [
        {"type": "session.update", "session": {"voice": "marin"}},
        {"type": "session.update", "session": {"input_audio_format": "audio/pcmu"}},
        {"type": "session.update", "session": {"turn_detection": {"idle_timeout_ms": 6000}}},
        {"type": "session.update", "session": {"type": "realtime"}},
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "hi"}],
            },
        },
    ]
    for event in bad:
        await client.send(event, check=False)
        error = await client.until("error")
        assert error["error"]["type"] == "invalid_request_error", error
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "Hello again."}],
            },
        }
    )
    created = await client.until("conversation.item.created")
    assert created["item"]["content"] == [{"type": "text", "text": "Hello again."}]
    await client.ws.close()


@pytest.mark.parametrize("code", [1011, 1006])
async def test_drop_ends_the_socket_as_a_failing_service_does(server, code):
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(server.url + "?model=m")
    await ws.recv()  # session.created
    await server.sessions[0].drop(code)
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(TIMEOUT):
            await ws.recv()
    assert ws.close_code == code
    await server.sessions[0].wait_closed()
