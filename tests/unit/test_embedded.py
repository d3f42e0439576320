"""The embedded Realtime agent over real sockets on 127.0.0.1.

Every server event received here is validated strictly against the SDK's GA server union, and
every client event sent (except the deliberately bad ones) against the GA client union. Waits
are on events, each under ``asyncio.timeout``; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import wave
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.agent import CHIME_TRANSCRIPT, ECHO_TRANSCRIPT, EmbeddedRealtimeServer
from gateway.agent.audio import Ring
from tests.realtime_schema import (
    UnknownFieldsError,
    validate_client_event,
    validate_server_event,
)

RATE = 24000
TIMEOUT = 5.0
MODEL = "gpt-realtime"


# -- signals ---------------------------------------------------------------------------------


def noise(seconds: float, dbfs: float = -65.0, *, rate: int = RATE, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(round(seconds * rate))
    return x * 32767 * 10 ** (dbfs / 20)


def speechlike(seconds: float, dbfs: float = -20.0, *, rate: int = RATE, seed: int = 1):
    """Noise band-limited to 200-3000 Hz, amplitude-modulated at a syllable rate (4 Hz)."""
    n = round(seconds * rate)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[(f < 200) | (f > 3000)] = 0
    x = np.fft.irfft(spec, n)
    x *= 0.55 + 0.45 * np.sin(2 * np.pi * 4 * np.arange(n) / rate)
    return x / np.sqrt(np.mean(x**2)) * 32767 * 10 ** (dbfs / 20)


def pcm(*parts: np.ndarray) -> np.ndarray:
    return np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)


def best_ncc(haystack: np.ndarray, needle: np.ndarray) -> float:
    """Max normalised cross-correlation of ``needle`` against every position in ``haystack``."""
    h = haystack.astype(np.float64)
    n = needle.astype(np.float64)
    if h.size < n.size:
        h = np.concatenate((h, np.zeros(n.size - h.size)))
    size = 1 << int(np.ceil(np.log2(h.size + n.size)))
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size)), size)
    corr = corr[: h.size - n.size + 1]
    energy = np.concatenate(([0.0], np.cumsum(h * h)))
    window = energy[n.size :] - energy[: -n.size]
    return float(np.max(corr / (np.linalg.norm(n) * np.sqrt(np.maximum(window, 1e-9)))))


# -- a small test client -------------------------------------------------------------------


class Client:
    validate_client = staticmethod(validate_client_event)
    validate_server = staticmethod(validate_server_event)

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any], *, check: bool = True) -> None:
        if check:
            self.validate_client(event)
        await self.ws.send(json.dumps(event))

    async def recv(self) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            raw = await self.ws.recv()
        event = json.loads(raw)
        self.validate_server(event)
        self.events.append(event)
        return event

    async def until(self, type_: str, **match: Any) -> dict[str, Any]:
        """Read events up to the first of ``type_`` whose top-level fields match ``match``."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                event = await self.recv()
                if event["type"] == type_ and all(event.get(k) == v for k, v in match.items()):
                    return event

    async def append(self, samples: np.ndarray, chunk: int = 480) -> None:
        for i in range(0, len(samples), chunk):
            audio = base64.b64encode(samples[i : i + chunk].astype("<i2").tobytes()).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": audio})

    async def append_bytes(self, data: bytes, chunk: int = 160) -> None:
        for i in range(0, len(data), chunk):
            audio = base64.b64encode(data[i : i + chunk]).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": audio})

    async def update(self, session: dict[str, Any], **extra: Any) -> dict[str, Any]:
        await self.send(
            {"type": "session.update", "session": {"type": "realtime", **session}, **extra}
        )
        return await self.until("session.updated")

    async def response(self, response_id: str | None = None) -> tuple[dict, list[dict]]:
        """Read up to response.done (of ``response_id``, or the first one); return it and the
        events seen on the way."""
        start = len(self.events)
        if response_id is None:
            done = await self.until("response.done")
        else:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    done = await self.until("response.done")
                    if done["response"]["id"] == response_id:
                        break
        return done, self.events[start:]


def audio_of(events: list[dict], response_id: str) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"])
        for e in events
        if e["type"] == "response.output_audio.delta" and e["response_id"] == response_id
    )


def as_pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def url(server: EmbeddedRealtimeServer, model: str | None = MODEL) -> str:
    return server.url + (f"?model={model}" if model else "")


async def open_client(server: EmbeddedRealtimeServer, **kwargs: Any) -> Client:
    async with asyncio.timeout(TIMEOUT):
        ws = await connect(url(server), **kwargs)
    client = Client(ws)
    created = await client.until("session.created")
    assert created["session"]["model"] == MODEL
    return client


@pytest.fixture
async def server():
    async with EmbeddedRealtimeServer(burst_speed=40.0) as srv:
        yield srv
    assert all(s.closed and not s.tasks for s in srv.sessions)


@pytest.fixture
async def client(server):
    c = await open_client(server)
    yield c
    await c.ws.close()


# -- the helper itself -----------------------------------------------------------------------


def test_schema_helper_is_strict():
    validate_client_event({"type": "input_audio_buffer.commit"})
    bad_rate = {"type": "audio/pcm", "rate": 16000}
    with pytest.raises(ValueError):
        validate_client_event(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"format": bad_rate}}},
            }
        )
    with pytest.raises(UnknownFieldsError, match="silence_duration"):
        validate_client_event(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {"turn_detection": {"type": "server_vad", "silence_duration": 5}}
                    },
                },
            }
        )
    with pytest.raises(ValueError):
        validate_server_event({"type": "response.audio.delta", "event_id": "e", "delta": ""})


def test_ring_keeps_the_last_samples():
    rng = np.random.default_rng(0)
    ring, ref = Ring(1000, initial=16), np.zeros(0, dtype=np.int16)
    for _ in range(300):
        x = rng.integers(-1000, 1000, rng.integers(0, 60)).astype(np.int16)
        ring.append(x)
        ref = np.concatenate((ref, x))
        a, b = sorted(rng.integers(0, len(ref) + 1, 2))
        lo = max(a, len(ref) - 1000)
        assert np.array_equal(ring.read(a, b), ref[lo:b] if b > lo else ref[:0])
    assert ring.total == len(ref)


# -- handshake ---------------------------------------------------------------------------------


async def refused(address: str, **kwargs: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with asyncio.timeout(TIMEOUT):
            await connect(address, **kwargs)
    return info.value


async def test_handshake_needs_the_api_key():
    async with EmbeddedRealtimeServer(api_key="sekret") as srv:
        exc = await refused(url(srv))
        assert exc.response.status_code == 401
        assert json.loads(exc.response.body)["error"]["code"] == "401"
        exc = await refused(url(srv), additional_headers={"api-key": "wrong"})
        assert exc.response.status_code == 401
        exc = await refused(url(srv), additional_headers={"Authorization": "Bearer wrong"})
        assert exc.response.status_code == 401
        for headers in ({"api-key": "sekret"}, {"Authorization": "Bearer sekret"}):
            c = await open_client(srv, additional_headers=headers)
            await c.ws.close()
        assert srv.sessions[0].headers["api-key"] == "sekret"
        assert srv.sessions[1].query == {"model": MODEL}
        assert srv.sessions[1].path == "/openai/v1/realtime"


async def test_handshake_refusals(server):
    exc = await refused(url(server, model=None))
    assert exc.response.status_code == 400
    for status, code in ((403, "PermissionDenied"), (404, "DeploymentNotFound"), (429, "429")):
        server.refuse_status = status
        exc = await refused(url(server))
        assert exc.response.status_code == status
        assert exc.response.headers["Content-Type"] == "application/json"
        assert json.loads(exc.response.body)["error"]["code"] == code
        assert ("Retry-After" in exc.response.headers) == (status == 429)
    assert exc.response.headers["Retry-After"] == "1"
    server.refuse_status = None
    exc = await refused(server.url.replace("/openai/v1/realtime", "/openai/realtim") + "?model=x")
    assert exc.response.status_code == 404
    # The preview path exists, but wants its api-version (tests/unit/test_embedded_preview.py).
    exc = await refused(server.preview_url + "?model=x")
    assert exc.response.status_code == 400
    assert "api-version" in json.loads(exc.response.body)["error"]["message"]
    c = await open_client(server)
    await c.ws.close()


# -- session ---------------------------------------------------------------------------------


async def test_session_created_and_partial_update(client, server):
    created = client.events[0]["session"]
    assert created["type"] == "realtime" and created["id"].startswith("sess_")
    assert created["output_modalities"] == ["audio"]
    assert created["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert created["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert created["instructions"] == ""

    s = (await client.update({"instructions": "Be brief."}))["session"]
    assert s["instructions"] == "Be brief."
    assert s["audio"] == created["audio"]

    td = {"type": "server_vad", "silence_duration_ms": 800}
    s = (await client.update({"audio": {"input": {"turn_detection": td}}}))["session"]
    assert s["audio"]["input"]["turn_detection"] == {
        **created["audio"]["input"]["turn_detection"],
        **td,
    }
    assert s["instructions"] == "Be brief."
    assert s["audio"]["output"] == created["audio"]["output"]

    s = (
        await client.update(
            {"audio": {"input": {"turn_detection": None}, "output": {"voice": "cedar"}}}
        )
    )["session"]
    assert s["audio"]["input"]["turn_detection"] is None
    assert s["audio"]["output"]["voice"] == "cedar"

    bad = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}
    await client.send(
        {"type": "session.update", "event_id": "evt_rate", "session": bad}, check=False
    )
    err = (await client.until("error"))["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == "session.audio.input.format.rate"
    assert err["event_id"] == "evt_rate"

    typo = {
        "type": "realtime",
        "audio": {"input": {"turn_detection": {"type": "server_vad", "silence": 1}}},
    }
    await client.send(
        {"type": "session.update", "event_id": "evt_typo", "session": typo}, check=False
    )
    err = (await client.until("error"))["error"]
    assert err["code"] == "unknown_parameter" and err["event_id"] == "evt_typo"

    await client.send({"type": "session.update", "session": {"instructions": "x"}}, check=False)
    assert (await client.until("error"))["error"]["param"] == "session.type"

    s = (await client.update({}))["session"]  # nothing changed by the refused updates
    assert s["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert s["instructions"] == "Be brief."
    received = server.sessions[-1].received
    assert [e["type"] for e in received].count("session.update") == 7


# -- turns and the echo ------------------------------------------------------------------------


async def test_turn_is_detected_and_echoed(client):
    speech = pcm(speechlike(1.5))
    await client.append(pcm(noise(0.5), speech, noise(1.0)))
    started = await client.until("input_audio_buffer.speech_started")
    assert abs(started["audio_start_ms"] - (500 - 300)) <= 30
    stopped = await client.until("input_audio_buffer.speech_stopped")
    assert abs(stopped["audio_end_ms"] - 2000) <= 30
    assert stopped["item_id"] == started["item_id"]
    committed = await client.until("input_audio_buffer.committed")
    assert committed["item_id"] == started["item_id"]
    user = (await client.until("conversation.item.done"))["item"]
    assert user["role"] == "user" and user["content"] == [
        {"type": "input_audio", "transcript": None}
    ]

    done, events = await client.response()
    rid = done["response"]["id"]
    assert done["response"]["status"] == "completed"
    assert done["response"]["usage"]["total_tokens"] > 0
    types = [e["type"] for e in events]
    assert types[:3] == ["response.created", "rate_limits.updated", "conversation.item.added"]
    tail = [t for t in types if t != "response.output_audio.delta"][-6:]
    assert tail == [
        "response.output_audio_transcript.done",
        "response.output_audio.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert all(len(base64.b64decode(e["delta"])) == 4800 for e in deltas[:-1])  # 100 ms each
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert transcript["transcript"] == ECHO_TRANSCRIPT

    echo = as_pcm(audio_of(events, rid))
    expected_ms = stopped["audio_end_ms"] - started["audio_start_ms"]
    assert abs(len(echo) * 1000 / RATE - expected_ms) <= 1
    assert best_ncc(echo, speech) >= 0.95
    assert len({e["event_id"] for e in client.events}) == len(client.events)


@pytest.fixture
def telephone_speech(tmp_path) -> np.ndarray:
    """A sentence from espeak-ng, band-limited to 8 kHz (a phone line) and back at 24 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    soxr = pytest.importorskip("soxr")
    wav = tmp_path / "turn.wav"
    text = "Testing the echo line, one two three."
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, timeout=30)
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return soxr.resample(soxr.resample(raw, rate, 8000), 8000, RATE)


async def test_espeak_turn_is_echoed(client, telephone_speech):
    speech = telephone_speech
    audible = np.flatnonzero(np.abs(speech.astype(np.int32)) > 300)
    onset_ms = 400 + audible[0] * 1000 // RATE
    end_ms = 400 + audible[-1] * 1000 // RATE
    await client.append(pcm(noise(0.4, -60), speech, noise(1.0, -60)))
    started = await client.until("input_audio_buffer.speech_started")
    stopped = await client.until("input_audio_buffer.speech_stopped")
    assert abs(started["audio_start_ms"] - (onset_ms - 300)) <= 30
    assert abs(stopped["audio_end_ms"] - end_ms) <= 30
    done, events = await client.response()
    echo = as_pcm(audio_of(events, done["response"]["id"]))
    assert best_ncc(echo, speech[audible[0] : audible[-1]]) >= 0.95


async def test_barge_in_cancels_the_response():
    async with EmbeddedRealtimeServer(burst_speed=2.0) as srv:
        client = await open_client(srv)
        await client.append(pcm(noise(0.3), speechlike(1.5), noise(0.7)))
        created = await client.until("response.created")
        rid = created["response"]["id"]
        await client.until("response.output_audio.delta", response_id=rid)
        # The caller talks over the answer.
        await client.append(pcm(speechlike(0.6, seed=7), noise(0.8)))
        done, events = await client.response(rid)
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"] == {
            "type": "cancelled",
            "reason": "turn_detected",
        }
        assert done["response"]["output"][0]["status"] == "incomplete"
        types = [e["type"] for e in events]
        assert "input_audio_buffer.speech_started" in types
        assert types.index("input_audio_buffer.speech_started") < types.index(
            "response.output_audio.done"
        )
        item_done = next(e for e in events if e["type"] == "response.output_item.done")
        assert item_done["item"]["status"] == "incomplete"
        # The second turn gets its own answer; the cancelled one sends nothing more.
        after = len(client.events)
        second = await client.until("response.created")
        done2, _ = await client.response(second["response"]["id"])
        assert done2["response"]["status"] == "completed"
        assert not [e for e in client.events[after:] if e.get("response_id") == rid]
        await client.ws.close()
        await srv.sessions[0].wait_closed()
        assert not srv.sessions[0].tasks


async def test_response_cancel_with_and_without_a_response():
    async with EmbeddedRealtimeServer(burst_speed=1.0) as srv:
        client = await open_client(srv)
        await client.update({"audio": {"input": {"turn_detection": None}}})
        await client.send({"type": "response.create"})
        rid = (await client.until("response.created"))["response"]["id"]
        await client.send({"type": "response.create", "event_id": "evt_again"})
        err = (await client.until("error"))["error"]
        assert err["code"] == "conversation_already_has_active_response"
        assert err["event_id"] == "evt_again"
        await client.send({"type": "response.cancel", "event_id": "evt_cancel"})
        done, events = await client.response(rid)
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        assert "response.output_audio.done" in [e["type"] for e in events]

        await client.send({"type": "response.cancel", "event_id": "evt_none"})
        err = (await client.until("error"))["error"]
        assert err["code"] == "response_cancel_not_active" and err["event_id"] == "evt_none"
        s = (await client.update({"instructions": "still here"}))["session"]
        assert s["instructions"] == "still here"
        await client.ws.close()


async def test_greeting_is_a_two_tone_chime(client):
    await client.send({"type": "response.create"})
    done, events = await client.response()
    assert done["response"]["status"] == "completed"
    chime = as_pcm(audio_of(events, done["response"]["id"])).astype(np.float64)
    assert abs(len(chime) / RATE - 0.6) < 0.02
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert transcript["transcript"] == CHIME_TRANSCRIPT

    def peak_hz(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x))
        return float(np.fft.rfftfreq(len(x), 1 / RATE)[np.argmax(spectrum)])

    first, second = peak_hz(chime[: RATE // 4]), peak_hz(chime[-RATE * 3 // 10 :])
    assert abs(first - 660) < 10 and abs(second - 990) < 10


async def test_truncate(client):
    await client.send({"type": "response.create"})
    done, events = await client.response()
    item_id = done["response"]["output"][0]["id"]
    sent_ms = len(audio_of(events, done["response"]["id"])) / 48  # pcm16 at 24 kHz
    assert sent_ms == 600

    truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
    await client.send({**truncate, "audio_end_ms": 300})
    ok = await client.until("conversation.item.truncated")
    assert (ok["item_id"], ok["content_index"], ok["audio_end_ms"]) == (item_id, 0, 300)

    await client.send({**truncate, "audio_end_ms": 5000, "event_id": "evt_long"})
    err = (await client.until("error"))["error"]
    assert err["type"] == "invalid_request_error" and err["event_id"] == "evt_long"
    assert item_id in err["message"] and "300ms" in err["message"] and "5000ms" in err["message"]

    await client.send({**truncate, "item_id": "item_nope", "audio_end_ms": 10})
    assert "item_nope" in (await client.until("error"))["error"]["message"]

    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        }
    )
    user = (await client.until("conversation.item.done"))["item"]
    await client.send({**truncate, "item_id": user["id"], "audio_end_ms": 0})
    err = (await client.until("error"))["error"]
    assert user["id"] in err["message"] and err["param"] == "item_id"


async def test_manual_commit_then_response_create_echoes(client):
    await client.update({"audio": {"input": {"turn_detection": None}}})
    await client.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
    err = (await client.until("error"))["error"]
    assert err["code"] == "input_audio_buffer_commit_empty" and err["event_id"] == "evt_empty"
    speech = pcm(speechlike(0.8, seed=3))
    await client.append_bytes(speech.astype("<i2").tobytes(), chunk=999)  # odd-sized appends
    await client.send({"type": "input_audio_buffer.commit"})
    committed = await client.until("input_audio_buffer.committed")
    user = (await client.until("conversation.item.done"))["item"]
    assert user["id"] == committed["item_id"] and user["role"] == "user"
    await client.send({"type": "response.create"})
    done, events = await client.response()
    echo = as_pcm(audio_of(events, done["response"]["id"]))
    assert np.array_equal(echo, speech)  # pcm16 in, pcm16 out: the very same samples
    assert committed["item_id"] != done["response"]["output"][0]["id"]
    await client.send({"type": "input_audio_buffer.clear"})
    await client.until("input_audio_buffer.cleared")


async def test_bad_input_gets_errors_and_the_session_survives(client, server):
    await client.ws.send("{not json")
    assert (await client.until("error"))["error"]["code"] == "invalid_json"
    await client.ws.send(b"\x00\x01")
    assert (await client.until("error"))["error"]["type"] == "invalid_request_error"
    await client.send(
        {"type": "input_audio_buffer.append", "audio": "!!not base64!!", "event_id": "evt_b64"},
        check=False,
    )
    err = (await client.until("error"))["error"]
    assert err["param"] == "audio" and err["event_id"] == "evt_b64"
    await client.send({"type": "no.such.event", "event_id": "evt_unknown"}, check=False)
    err = (await client.until("error"))["error"]
    assert err["param"] == "type" and err["event_id"] == "evt_unknown"
    await client.send({"type": "conversation.item.create", "item": {"type": "bogus"}}, check=False)
    assert (await client.until("error"))["error"]["param"] == "item.type"
    await client.send({"type": "output_audio_buffer.clear"})
    await client.until("error")
    # Still a working session: a turn is detected and answered.
    await client.append(pcm(noise(0.2), speechlike(0.5), noise(0.8)))
    done, _ = await client.response()
    assert done["response"]["status"] == "completed"
    assert not server.sessions[-1].closed


async def test_max_session_duration_closes_with_1001():
    async with EmbeddedRealtimeServer(max_session_s=0.2) as srv:
        client = await open_client(srv)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await client.recv()
        assert client.ws.close_code == 1001
        assert client.ws.close_reason.startswith("Your session hit the maximum duration of")
        await srv.sessions[0].wait_closed()
        assert not srv.sessions[0].tasks


async def test_close_ends_every_session_and_task():
    srv = EmbeddedRealtimeServer(burst_speed=1.0)
    await srv.start()
    clients = [await open_client(srv) for _ in range(3)]
    await clients[0].send({"type": "response.create"})
    await clients[0].until("response.output_audio.delta")
    await srv.close()
    for c in clients:
        async with asyncio.timeout(TIMEOUT):
            await c.ws.wait_closed()
        assert c.ws.close_code == 1001
    assert all(s.closed and not s.tasks for s in srv.sessions)
    await srv.close()  # idempotent
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
async def test_g711_in_and_out(client, name):
    g711 = pytest.importorskip("gateway.media.g711")
    codec = g711.codec_by_name(name)
    fmt = {"type": f"audio/{name.lower()}"}
    s = await client.update({"audio": {"input": {"format": fmt}, "output": {"format": fmt}}})
    assert s["session"]["audio"]["output"]["format"] == fmt
    speech = pcm(speechlike(1.2, rate=8000, seed=5))
    line = pcm(noise(0.4, rate=8000), speech, noise(0.9, rate=8000))
    await client.append_bytes(bytes(codec.encode(line)))
    started = await client.until("input_audio_buffer.speech_started")
    assert abs(started["audio_start_ms"] - 100) <= 30
    stopped = await client.until("input_audio_buffer.speech_stopped")
    assert abs(stopped["audio_end_ms"] - 1600) <= 30
    done, events = await client.response()
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert len(base64.b64decode(deltas[0]["delta"])) == 800  # 100 ms of G.711
    echo = np.asarray(codec.decode(audio_of(events, done["response"]["id"])), dtype=np.int16)
    assert best_ncc(echo, speech[400:-400]) >= 0.95


async def test_created_audio_item_is_echoed_and_text_responses(client):
    await client.update({"audio": {"input": {"turn_detection": None}}})
    speech = pcm(speechlike(0.5, seed=11))
    audio = base64.b64encode(speech.astype("<i2").tobytes()).decode()
    content = [{"type": "input_audio", "audio": audio}]
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": content},
        }
    )
    added = await client.until("conversation.item.added")
    assert "audio" not in added["item"]["content"][0]  # audio bytes are not echoed in events
    await client.send({"type": "response.create"})
    done, events = await client.response()
    assert best_ncc(as_pcm(audio_of(events, done["response"]["id"])), speech) >= 0.99

    await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    done, events = await client.response()
    assert done["response"]["status"] == "completed"
    types = [e["type"] for e in events]
    assert "response.output_text.done" in types and "response.output_audio.delta" not in types
    item_id = done["response"]["output"][0]["id"]
    await client.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 0,
        }
    )
    await client.until("error")


async def test_transcription_placeholder_when_configured(client):
    transcription = {"model": "gpt-4o-mini-transcribe"}
    await client.update({"audio": {"input": {"transcription": transcription}}})
    await client.append(pcm(noise(0.2), speechlike(0.6), noise(0.7)))
    stopped = await client.until("input_audio_buffer.speech_stopped")
    done = await client.until("conversation.item.input_audio_transcription.completed")
    assert done["item_id"] == stopped["item_id"] and done["transcript"]
    await client.response()
