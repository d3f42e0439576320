"""The embedded agent's sans-I/O pieces, without sockets or sleeps: frames in, frames out.

``AgentSession`` is driven the way the websockets shell drives it (``receive`` a frame,
``take`` what it queued, ``next_delta``/``complete`` for a response's audio), and every server
event it queues is validated strictly against the official SDK's union for its dialect. The
checks of ``gateway.agent.schema`` and the ``InputAudio`` turn edges are tables of inputs and
expected outputs.
"""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.agent import audio as agent_audio
from gateway.agent import schema
from gateway.agent.audio import RATE, InputAudio, encode_chunks, resample_all
from gateway.agent.responses import CHIME_TRANSCRIPT, ECHO_TRANSCRIPT, Response
from gateway.agent.schema import InvalidRequest
from gateway.agent.session import AgentSession, Frame, StreamAudio
from tests.realtime_schema import validate_preview_server_event, validate_server_event
from tests.unit.test_embedded import best_ncc, noise, pcm, speechlike

AGENT = Path(__file__).resolve().parents[2] / "gateway" / "agent"


class Script:
    """What the server would hold: no scripted answer, no function calls."""

    def __init__(self, *, function_calls: list[tuple[str, str]] | None = None) -> None:
        self.answer: tuple[np.ndarray, str] | None = None
        self.function_calls = function_calls or []
        self.keep_events = 100


def new_session(*, preview: bool = False, script: Script | None = None) -> AgentSession:
    session = AgentSession("gpt-realtime", 2e9, preview=preview, script=script or Script())
    session.open()
    return session


def frames(session: AgentSession) -> tuple[list[dict[str, Any]], list[Response]]:
    """What the session queued: the events (validated for its dialect) and streams started."""
    events, streams = [], []
    validate = validate_preview_server_event if session.preview else validate_server_event
    for out in session.take():
        if isinstance(out, StreamAudio):
            streams.append(out.response)
            continue
        assert isinstance(out, Frame)
        event = json.loads(out.text)
        validate(event)
        events.append(event)
    return events, streams


def send(session: AgentSession, event: dict[str, Any]) -> tuple[list[dict], list[Response]]:
    session.receive(json.dumps(event))
    return frames(session)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def append(samples: np.ndarray) -> dict[str, Any]:
    data = samples.astype("<i2").tobytes()
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}


def play_out(session: AgentSession, resp: Response) -> list[dict[str, Any]]:
    """What the shell does with a stream, minus the pacing: every delta, then the end."""
    for delta, ms in resp.chunks:
        if not session.next_delta(resp, delta, ms):
            break
    else:
        session.complete(resp)
    return frames(session)[0]


RESPONSE_START = [
    "response.created",
    "rate_limits.updated",
    "conversation.item.added",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_audio_transcript.delta",
]
RESPONSE_END = [
    "response.output_audio_transcript.done",
    "response.output_audio.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


# -- the session state machine ---------------------------------------------------------------


def test_open_queues_session_created_with_the_default_session() -> None:
    events, streams = frames(new_session())
    assert types(events) == ["session.created"] and not streams
    assert events[0]["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": RATE}


def test_greeting_is_the_chime_streamed_then_completed() -> None:
    session = new_session()
    frames(session)
    events, streams = send(session, {"type": "response.create"})
    assert types(events) == RESPONSE_START and len(streams) == 1
    assert events[-1]["delta"] == CHIME_TRANSCRIPT
    resp = streams[0]
    assert session.active is resp
    out = play_out(session, resp)
    assert types(out) == ["response.output_audio.delta"] * len(resp.chunks) + RESPONSE_END
    assert out[-1]["response"]["status"] == "completed" and session.active is None
    heard = np.concatenate([np.frombuffer(base64.b64decode(e["delta"]), "<i2") for e in out[:-6]])
    assert best_ncc(heard, agent_audio.chime()) > 0.99


def test_a_caller_turn_is_committed_and_echoed() -> None:
    session = new_session()
    frames(session)
    turn = speechlike(1.0, seed=3)
    events, streams = send(session, append(pcm(noise(0.5), turn, noise(0.8))))
    assert types(events) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        *RESPONSE_START,
    ]
    assert events[-1]["delta"] == ECHO_TRANSCRIPT
    # The onset at 500 ms less the 300 ms prefix padding; the end of the loud part.
    assert 180 <= events[0]["audio_start_ms"] <= 220 and 1480 <= events[1]["audio_end_ms"] <= 1510
    out = play_out(session, streams[0])
    echo = np.concatenate([np.frombuffer(base64.b64decode(e["delta"]), "<i2") for e in out[:-6]])
    assert best_ncc(echo, pcm(turn)) > 0.99


def test_barge_in_cancels_the_answer_and_stops_its_deltas() -> None:
    session = new_session()
    frames(session)
    _, (resp,) = send(session, {"type": "response.create"})
    assert session.next_delta(resp, *resp.chunks[0])
    frames(session)
    events, streams = send(session, append(pcm(noise(0.1), speechlike(0.4))))
    assert types(events) == ["input_audio_buffer.speech_started", *RESPONSE_END] and not streams
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["output"][0]["status"] == "incomplete"
    assert not session.next_delta(resp, *resp.chunks[1]) and session.active is None
    session.complete(resp)  # the shell's stream ends: nothing more to say
    assert frames(session) == ([], [])


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "response.cancel"}, "response_cancel_not_active", None),
        ({"type": "nope"}, "invalid_value", "type"),
        ({"no": "type"}, "missing_required_parameter", "type"),
        ({"type": "input_audio_buffer.append", "audio": "@@"}, "invalid_value", "audio"),
        ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty", None),
        ({"type": "conversation.item.delete", "item_id": "x"}, "item_not_found", "item_id"),
        ({"type": "session.update", "session": {"type": "realtime", "x": 1}},
         "unknown_parameter", "session.x"),
        ({"type": "output_audio_buffer.clear"}, "invalid_value", "type"),
    ],
)  # fmt: skip
def test_a_refused_event_is_one_error_event(event: dict, code: str, param: str | None) -> None:
    session = new_session()
    frames(session)
    event = {"event_id": "evt_1", **event}
    events, streams = send(session, event)
    assert types(events) == ["error"] and not streams
    error = events[0]["error"]
    assert (error["code"], error["param"], error["event_id"]) == (code, param, "evt_1")


@pytest.mark.parametrize(
    "message",
    [b"\x00binary", "{not json", "[1, 2]", '"text"', "null"],
)
def test_a_frame_that_is_not_an_event_object_is_refused(message: str | bytes) -> None:
    session = new_session()
    frames(session)
    session.receive(message)
    events, _ = frames(session)
    assert types(events) == ["error"] and events[0]["error"]["code"] == "invalid_json"


def test_truncate_cuts_the_answer_to_what_was_heard() -> None:
    session = new_session()
    frames(session)
    _, (resp,) = send(session, {"type": "response.create"})
    play_out(session, resp)
    item_id = resp.item_id
    truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
    events, _ = send(session, {**truncate, "audio_end_ms": 250})
    assert types(events) == ["conversation.item.truncated"]
    assert events[0]["audio_end_ms"] == 250
    # Not past the end of what was generated, nor of what is left after a cut.
    events, _ = send(session, {**truncate, "audio_end_ms": 300})
    assert events[0]["error"]["param"] == "audio_end_ms"
    retrieved, _ = send(session, {"type": "conversation.item.retrieve", "item_id": item_id})
    assert retrieved[0]["item"]["content"][0]["transcript"] == ""


def test_scripted_function_call_answers_the_turn() -> None:
    session = new_session(script=Script(function_calls=[("hang_up", '{"reason":"done"}')]))
    frames(session)
    events, streams = send(session, append(pcm(noise(0.1), speechlike(0.5), noise(0.8))))
    assert not streams and session.active is None
    assert types(events)[-7:] == [
        "response.created",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert events[-1]["response"]["output"][0]["arguments"] == '{"reason":"done"}'


def test_preview_session_speaks_the_preview_dialect() -> None:
    session = new_session(preview=True)
    events, _ = frames(session)
    assert events[0]["session"]["voice"] == "alloy"
    update = {"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}}
    events, _ = send(session, update)
    assert types(events) == ["session.updated"]
    assert events[0]["session"]["input_audio_format"] == "g711_ulaw"
    events, (resp,) = send(session, {"type": "response.create"})
    assert "conversation.item.created" in types(events)
    assert types(play_out(session, resp))[0] == "response.audio.delta"


def test_the_agent_imports_nothing_above_it() -> None:
    """No import of the gateway's client, bridge or app: the agent is a peer of the client."""
    for path in AGENT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                assert not node.module.startswith(
                    ("gateway.realtime", "gateway.bridge", "gateway.app")
                ), f"{path.name} imports {node.module}"


# -- schema: client event checks -------------------------------------------------------------

BASE = schema.default_session("gpt-realtime", 2e9)


@pytest.mark.parametrize(
    ("update", "path", "expected"),
    [
        ({"instructions": None}, ("instructions",), ""),
        ({"output_modalities": ["text"]}, ("output_modalities",), ["text"]),
        ({"audio": {"input": {"format": {"type": "audio/pcmu"}}}},
         ("audio", "input", "format"), {"type": "audio/pcmu"}),
        ({"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.7}}}},
         ("audio", "input", "turn_detection", "threshold"), 0.7),
        ({"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
         ("audio", "input", "turn_detection"), schema.DEFAULT_SEMANTIC_VAD),
        ({"audio": {"input": {"turn_detection": None}}}, ("audio", "input", "turn_detection"),
         None),
        ({"audio": {"output": {"voice": "cedar", "speed": 1.2}}}, ("audio", "output", "speed"),
         1.2),
        ({"tool_choice": "required"}, ("tool_choice",), "required"),
        ({"max_output_tokens": 4096}, ("max_output_tokens",), 4096),
        ({"tracing": "auto"}, ("tracing",), "auto"),
    ],
)  # fmt: skip
def test_merge_session_applies_a_partial_update(update: dict, path: tuple, expected: Any) -> None:
    merged = schema.merge_session(BASE, {"type": "realtime", **update}, voice_locked=False)
    value: Any = merged
    for key in path:
        value = value[key]
    assert value == expected
    assert BASE["audio"]["input"]["turn_detection"] == schema.DEFAULT_SERVER_VAD  # untouched


@pytest.mark.parametrize(
    ("update", "locked", "param", "code"),
    [
        ({}, False, "session.type", "missing_required_parameter"),
        ({"type": "transcription"}, False, "session.type", "invalid_value"),
        ({"type": "realtime", "voice": "x"}, False, "session.voice", "unknown_parameter"),
        ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
         False, "session.audio.input.format.rate", "invalid_value"),
        ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad",
          "threshold": 2}}}}, False, "session.audio.input.turn_detection.threshold",
         "invalid_value"),
        ({"type": "realtime", "audio": {"output": {"voice": "cedar"}}}, True,
         "session.audio.output.voice", "cannot_update_voice"),
        ({"type": "realtime", "model": "other"}, True, "session.model", "cannot_update_model"),
        ({"type": "realtime", "tools": [{"type": "function"}]}, False, "session.tools[0].name",
         "missing_required_parameter"),
        ({"type": "realtime", "tool_choice": "maybe"}, False, "session.tool_choice",
         "invalid_value"),
        ({"type": "realtime", "max_output_tokens": True}, False, "session.max_output_tokens",
         "invalid_value"),
        ({"type": "realtime", "parallel_tool_calls": 1}, False, "session.parallel_tool_calls",
         "invalid_type"),
    ],
)  # fmt: skip
def test_merge_session_refuses_as_the_service_does(
    update: dict, locked: bool, param: str, code: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        schema.merge_session(BASE, update, voice_locked=locked)
    assert (refused.value.param, refused.value.code) == (param, code)


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
         None),
        ({"type": "function_call_output", "call_id": "c", "output": "{}"}, None),
        ({"type": "message", "role": "robot", "content": []}, "item.role"),
        ({"type": "message", "role": "assistant", "content": [{"type": "input_text"}]},
         "item.content[0].type"),
        ({"type": "message", "role": "user"}, "item.content"),
        ({"type": "function_call", "name": "f"}, "item.arguments"),
        ({"type": "reasoning"}, "item.type"),
    ],
)  # fmt: skip
def test_check_item(item: dict, param: str | None) -> None:
    if param is None:
        schema.check_item(item)
        return
    with pytest.raises(InvalidRequest) as refused:
        schema.check_item(item)
    assert refused.value.param == param


@pytest.mark.parametrize(
    ("event", "result"),
    [
        ({"audio": base64.b64encode(b"\x01\x02").decode()}, b"\x01\x02"),
        ({"audio": ""}, b""),
        ({}, "missing_required_parameter"),
        ({"audio": 12}, "missing_required_parameter"),
        ({"audio": "not base64!"}, "invalid_value"),
        ({"audio": "A" * (schema.MAX_APPEND_CHARS + 4)}, "invalid_value"),
    ],
)
def test_append_audio(event: dict, result: bytes | str) -> None:
    if isinstance(result, bytes):
        assert schema.append_audio(event) == result
        return
    with pytest.raises(InvalidRequest) as refused:
        schema.append_audio(event)
    assert refused.value.code == result and refused.value.param == "audio"


# -- audio: input turns, formats, resampling -------------------------------------------------


@pytest.mark.parametrize(
    ("chunks_ms", "edges"),
    [
        ([2000], [(True, 200), (False, 1500)]),  # one append, both edges
        ([20] * 100, [(True, 200), (False, 1500)]),  # 20 ms frames: the same edges
        ([700, 1300], [(True, 200), (False, 1500)]),  # cut inside the turn
    ],
)
def test_input_audio_edges_do_not_depend_on_chunking(chunks_ms: list, edges: list) -> None:
    signal = pcm(noise(0.5), speechlike(1.0, seed=5), noise(0.5))
    audio = InputAudio()
    audio.set_vad(0.5, 300, 500)
    got, pos = [], 0
    for ms in chunks_ms:
        n = ms * RATE // 1000
        for edge in audio.append(signal[pos : pos + n].astype("<i2").tobytes()):
            got.append((type(edge).__name__ == "SpeechStarted", audio.edge_ms(edge)))
        pos += n
    assert [(s, round(ms, -2)) for s, ms in got] == edges


@pytest.mark.parametrize("fmt_type", ["audio/pcm", "audio/pcmu", "audio/pcma"])
def test_output_audio_is_faithful_in_every_format(fmt_type: str) -> None:
    """What a G.711 session hears back is the 24 kHz answer, band-limited, not distorted."""
    answer = pcm(speechlike(1.0, seed=7))
    chunks = encode_chunks(answer, fmt_type)
    assert abs(sum(ms for _, ms in chunks) - 1000) < 1 and all(ms <= 100 for _, ms in chunks)
    data = b"".join(base64.b64decode(d) for d, _ in chunks)
    if fmt_type == "audio/pcm":
        assert np.array_equal(np.frombuffer(data, "<i2"), answer)
        return
    codec = agent_audio.g711_codec(fmt_type)
    narrow = np.asarray(codec.decode(data), dtype=np.int16)
    assert best_ncc(resample_all(narrow, 8000, RATE), answer) > 0.97


def test_resample_all_matches_length_and_beats_soxr_int16() -> None:
    """The one-shot resampling through media/resample.py keeps soxr.resample's length and
    rounds instead of dithering: a 1 kHz sine comes out cleaner (see audio.py)."""
    soxr = pytest.importorskip("soxr")
    t = np.arange(3 * RATE) / RATE
    x = (12000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)

    def snr(y: np.ndarray) -> float:
        ideal = 12000 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / 8000)
        err = y[400:-400].astype(float) - ideal[400:-400]
        return 10 * np.log10(np.sum(ideal[400:-400] ** 2) / np.sum(err**2))

    ours, theirs = resample_all(x, RATE, 8000), soxr.resample(x, RATE, 8000)
    assert len(ours) == len(theirs) and ours.flags.c_contiguous
    assert snr(ours) >= snr(theirs) and snr(ours) > 90
