"""CallCore's side paths, each through its public inputs: the transcript file it feeds, the
end of an item's audio, the counters and log lines an operator reads (service errors, garbage
frames, dropped keys, local pre-emption), and the downlink latency probe.

Written against the mutants of core.py that survived test_call_core.py (scripts/mutation.py
--module core): a dropped ``case``, a wrong item key, a counter set instead of counted.
"""

from __future__ import annotations

import io
import json
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.bridge.core import (
    ERRORS_LOGGED_IN_FULL,
    MAX_LOGGED_MESSAGE,
    CallCore,
)
from gateway.bridge.keypad import KEY_BURST, KEYS_PER_S
from gateway.bridge.model_audio import ModelAudio
from gateway.bridge.playback import Playback
from gateway.bridge.tools import ToolCall
from gateway.bridge.transcript import TranscriptLog
from gateway.config import DtmfConfig
from gateway.media.g711 import PCMU
from gateway.metrics import CallProbe, Metrics
from gateway.realtime import protocol as rt
from tests.unit.test_call_core import audio, call


class LevelLog:
    """A structlog stand-in that keeps the level too: (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str):  # debug, info, warning, error
        def log(event: str, **fields: Any) -> None:
            self.lines.append((level, event, fields))

        return log

    def find(self, event: str) -> list[tuple[str, dict[str, Any]]]:
        return [(level, fields) for level, name, fields in self.lines if name == event]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class File(io.StringIO):
    """A transcript file whose text can still be read after the call closed it."""

    def close(self) -> None:
        self.text = self.getvalue()
        super().close()


def filed_call(max_buffer_s: float = 60.0) -> tuple[CallCore, File, Clock]:
    """A core whose transcript goes to a file (JSON lines) with a clock the test moves."""
    clock, file, log = Clock(), File(), LevelLog()
    transcript = TranscriptLog(file, log, clock=clock, wall=lambda: 0.0)
    playback = Playback(
        160, on_finished=transcript.agent_played, clock=clock, max_buffer_s=max_buffer_s
    )
    core = CallCore(
        playback,
        ModelAudio(playback, PCMU, passthrough=True),
        transcript=transcript,
        conversation=None,
        dtmf=DtmfConfig(),
        log=log,
        probe=CallProbe(Metrics(CollectorRegistry())),
        interrupts=True,
    )
    return core, file, clock


def turns(file: File) -> list[dict[str, Any]]:
    text = file.text if file.closed else file.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    return [line for line in lines if line.get("type") == "turn"]


def test_the_callers_turn_is_filed_under_its_item_from_when_speech_started() -> None:
    core, file, clock = filed_call()
    clock.now = 1.0
    core.server_event(rt.SpeechStarted(0, "u1"), clock.now)
    clock.now = 3.0
    core.server_event(rt.Transcript("caller", "u1", "A table for two."), clock.now)
    [turn] = turns(file)
    assert (turn["role"], turn["item_id"], turn["text"]) == ("caller", "u1", "A table for two.")
    assert turn["offset_s"] == 1.0  # the turn began when the caller began, not at its text


def test_an_answer_cut_by_the_end_of_the_call_keeps_its_transcript_deltas() -> None:
    core, file, _ = filed_call()
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.server_event(rt.TranscriptDelta("a1", "I can "), 0.0)
    core.server_event(rt.TranscriptDelta("a1", "book that"), 0.0)
    core.end()
    core.transcript.close("caller_bye")
    [turn] = turns(file)
    assert (turn["role"], turn["item_id"], turn["text"]) == ("agent", "a1", "")
    assert turn["full_text"] == "I can book that" and turn["interrupted"]


def test_audio_done_lets_a_short_answer_play_out() -> None:
    """10 ms of audio is less than a frame: playback waits for more until output_audio.done
    for its own (response, item, part) says none will come; then it plays, padded."""
    core, file, _ = filed_call()
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.audio_delta(audio("r1", "a1", 10))
    core.server_event(rt.Transcript("agent", "a1", "Yes."), 0.0)
    assert core.next_frame() is None
    core.server_event(rt.AudioDone("r1", "a1", 0), 0.0)
    assert core.next_frame() is not None
    [turn] = turns(file)
    assert (turn["text"], turn["heard_ms"], turn["interrupted"]) == ("Yes.", 10, False)


def test_audio_done_of_a_cancelled_answer_is_ignored() -> None:
    """After a barge-in the cancelled answer's late audio is dropped; its done changes
    nothing for the next answer."""
    core, _, _ = filed_call()
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.audio_delta(audio("r1", "a1", 500))
    core.server_event(rt.SpeechStarted(0, "u1"), 0.0)
    core.server_event(rt.AudioDone("r1", "a1", 0), 0.0)
    assert not core.playback.items  # no account opened again for the cut item


def test_each_response_is_counted() -> None:
    c = call()
    for n in ("r1", "r2", "r3"):
        c.core.server_event(rt.ResponseStarted(n), 0.0)
        c.core.server_event(rt.ResponseDone(n, "completed", None), 0.0)
    assert c.core.stats.responses == 3


def test_garbage_frames_are_counted_and_logged_one_in_a_hundred() -> None:
    core, _, _ = filed_call()
    for _ in range(101):
        assert list(core.server_event(rt.Malformed("bad JSON", "{nope"), 0.0)) == []
    assert core.stats.malformed_events == 101
    lines = core.log.find("realtime.malformed_event")
    assert [fields["count"] for _, fields in lines] == [1, 101]
    assert lines[0] == ("warning", {"reason": "bad JSON", "excerpt": "{nope", "count": 1})


def test_service_errors_are_logged_in_full_then_sparingly_and_cut_short() -> None:
    core, _, _ = filed_call()
    error = rt.ServiceError("x" * 100, "m" * 2000)
    for _ in range(200):
        assert list(core.server_event(error, 0.0)) == []
    assert core.stats.service_errors == 200
    lines = core.log.find("realtime.error")
    expected = [*range(1, ERRORS_LOGGED_IN_FULL + 1), 100, 200]
    assert [fields["count"] for _, fields in lines] == expected
    level, fields = lines[0]
    assert level == "warning"
    assert fields["code"] == "x" * 64 and fields["message"] == "m" * MAX_LOGGED_MESSAGE
    benign = rt.ServiceError("response_cancel_not_active", "nothing to cancel")
    assert benign.benign
    core.server_event(benign, 0.0)  # 201st: not logged
    core.stats.service_errors = 0
    core.server_event(benign, 0.0)
    assert core.log.find("realtime.error")[-1] == (
        "debug",
        {"code": "response_cancel_not_active", "message": "nothing to cancel", "count": 1},
    )
    core.server_event(rt.ServiceError(None, "no code"), 0.0)
    assert core.log.find("realtime.error")[-1][1]["code"] is None


def test_the_downlink_measure_ends_with_the_first_frame_played() -> None:
    core, _, _ = filed_call()
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.audio_delta(audio("r1", "a1", 100))
    assert core.probe.downlink_since is not None
    assert core.next_frame() is not None
    assert core.probe.downlink_since is None


def test_local_pre_emption_needs_audio_to_hold_and_counts_once() -> None:
    c = call()
    c.core.caller_speaking(1.0)  # nothing playing: nothing to hold
    assert not c.core.playback.held and c.core.deadline(1.0) is None
    assert c.core.stats.local_barge_ins == 0
    c.core.server_event(rt.ResponseStarted("r1"), 0.0)
    c.core.audio_delta(audio("r1", "a1", 1000))
    c.core.caller_speaking(2.0)
    c.core.caller_speaking(2.1)  # already held: the first hold's deadline stands
    assert c.core.deadline(2.1) == 2.3
    assert c.core.stats.local_barge_ins == 1
    assert len(c.log.find("call.local_barge_in")) == 1


def test_unconfirmed_holds_are_counted_and_do_not_confirm_a_later_barge_in() -> None:
    c = call()
    c.core.server_event(rt.ResponseStarted("r1"), 0.0)
    c.core.audio_delta(audio("r1", "a1", 1000))
    for start in (1.0, 2.0):
        c.core.caller_speaking(start)
        c.core.tick(start + 0.3)
    assert c.core.stats.local_unconfirmed == 2
    assert c.core.stats.local_barge_ins == 2
    assert len(c.log.find("call.local_barge_in_unconfirmed")) == 2
    assert c.core.server_event(rt.SpeechStarted(0, "u1"), 3.0)  # a barge-in, not local
    assert c.log.find("call.local_barge_in_confirmed") == []


def test_dropped_keys_are_logged_first_and_every_hundredth_and_the_rate_refills() -> None:
    c = call(dtmf={"inter_digit_ms": 0, "respond": False})
    for _ in range(KEY_BURST + 101):
        c.core.key("1", 0.0)
    drops = c.log.find("call.dtmf_dropped")
    assert drops == [
        {"dropped": 1, "limit_per_s": KEYS_PER_S},
        {"dropped": 101, "limit_per_s": KEYS_PER_S},
    ]
    assert list(c.core.key("2", 1.0, via="info")) == [rt.AddText("user", "[DTMF 2]")]
    assert c.log.find("call.dtmf")[-1] == {"digit": "2", "via": "info"}
    accepted = sum(bool(c.core.key("3", 1.0)) for _ in range(20))
    assert accepted == KEYS_PER_S - 1  # one second refilled ten; "2" took one


def test_model_audio_beyond_the_buffer_is_counted_in_ms_and_logged_once_per_item() -> None:
    core, _, _ = filed_call(max_buffer_s=1.0)
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.audio_delta(audio("r1", "a1", 900))
    assert core.stats.playback_dropped_ms == 0 and core.log.find("playback.overflow") == []
    core.audio_delta(audio("r1", "a1", 200))  # past 1 s: this delta and the rest go
    core.audio_delta(audio("r1", "a1", 300))
    assert core.stats.playback_dropped_ms == 500
    dropped = core.probe.metrics.playback_dropped._value.get()
    assert dropped == 0.5
    [(level, fields)] = core.log.find("playback.overflow")
    assert level == "warning"
    assert fields == {"response_id": "r1", "item_id": "a1", "buffered_s": 0.9, "limit_s": 1.0}
    core.audio_delta(audio("r1", "a2", 200))  # the next item overflows too: logged again
    assert [f["item_id"] for _, f in core.log.find("playback.overflow")] == ["a1", "a2"]
    assert core.stats.playback_dropped_ms == 700


def test_a_response_asked_for_is_running_until_done_so_a_second_waits() -> None:
    """Two tool results before the service answers: one response.create, the other owed
    until that response is done (the service refuses a second while one runs)."""
    c = call()
    tool = ToolCall("call_1", "lookup", "{}")
    assert not c.core.responding
    assert list(c.core.tool_done(tool, "1", 0.0)) == [
        rt.FunctionOutput("call_1", "1"),
        rt.CreateResponse(),
    ]
    assert c.core.responding
    assert list(c.core.tool_done(tool, "2", 0.0)) == [rt.FunctionOutput("call_1", "2")]
    c.core.server_event(rt.ResponseStarted("r1"), 0.0)
    done = c.core.server_event(rt.ResponseDone("r1", "completed", None), 0.0)
    assert list(done) == [rt.CreateResponse()]


def test_a_key_entry_for_the_model_is_logged() -> None:
    c = call(dtmf={"inter_digit_ms": 0, "respond": False})
    c.core.key("9", 0.0)
    assert c.log.find("call.dtmf_to_model") == [{"keys": "9"}]


def test_every_late_delta_of_a_cancelled_answer_is_counted() -> None:
    c = call()
    c.core.server_event(rt.ResponseStarted("r1"), 0.0)
    c.core.audio_delta(audio("r1", "a1", 100))
    c.core.server_event(rt.SpeechStarted(0, "u1"), 0.0)
    for _ in range(3):
        c.core.audio_delta(audio("r1", "a1", 20))
    assert c.core.stats.deltas_dropped == 3
    assert c.core.playback.buffered_ms == 0


def test_the_truncate_names_the_content_part_that_was_playing() -> None:
    c = call()
    c.core.server_event(rt.ResponseStarted("r1"), 0.0)
    c.core.audio_delta(rt.AudioDelta("r1", "a1", 1, b"\xff" * 8000))
    for _ in range(5):
        c.core.next_frame()
    commands = c.core.server_event(rt.SpeechStarted(0, "u1"), 0.0)
    assert list(commands) == [rt.CancelResponse(), rt.Truncate("a1", 100, 1)]


def test_response_done_ends_its_items_audio_even_without_audio_done() -> None:
    core, _, _ = filed_call()
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.audio_delta(audio("r1", "a1", 10))
    assert core.next_frame() is None  # a short answer waits for its end
    core.server_event(rt.ResponseDone("r1", "completed", None), 0.0)
    assert core.next_frame() is not None
    assert core.log.find("realtime.response_done") == [
        ("info", {"status": "completed", "reason": None})
    ]


def test_token_usage_is_summed_over_the_calls_responses() -> None:
    c = call()
    usage = {"total_tokens": 10, "output_tokens": 4, "input_token_details": {"audio_tokens": 3}}
    for n in ("r1", "r2"):
        c.core.server_event(rt.ResponseStarted(n), 0.0)
        c.core.server_event(rt.ResponseDone(n, "completed", None, usage), 0.0)
    assert c.core.stats.usage == {"total_tokens": 20, "output_tokens": 8}


def sample(core: CallCore, name: str, **labels: str) -> float:
    value = core.probe.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_service_errors_and_garbage_are_counted_by_code_in_the_metrics() -> None:
    core, _, _ = filed_call()
    core.server_event(rt.Malformed("bad JSON"), 0.0)
    core.server_event(rt.ServiceError(None, "no code"), 0.0)
    core.server_event(rt.ServiceError("server_error", "oops"), 0.0)
    core.server_event(rt.ServiceError("server_error", "oops"), 0.0)
    name = "sipgw_realtime_errors_total"
    assert sample(core, name, code="malformed_event") == 1
    assert sample(core, name, code="no_code") == 1
    assert sample(core, name, code="server_error") == 2
    assert (core.stats.malformed_events, core.stats.service_errors) == (1, 3)


def test_each_barge_in_is_counted_cancelled_once_and_measured() -> None:
    """Two barge-ins into one answer: the second finds it cancelled already (no second
    response.cancel) and truncates what played since."""
    core, _, _ = filed_call()
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.audio_delta(audio("r1", "a1", 100))
    assert list(core.server_event(rt.SpeechStarted(0, "u1"), 0.0)) == [
        rt.CancelResponse(),
        rt.Truncate("a1", 0, 0),
    ]
    assert list(core.server_event(rt.SpeechStarted(0, "u1b"), 0.0)) == []  # cancelled once
    core.server_event(rt.ResponseDone("r1", "cancelled", "turn_detected"), 0.0)
    assert core.log.find("realtime.response_done") == [
        ("info", {"status": "cancelled", "reason": "turn_detected"})
    ]
    core.server_event(rt.ResponseStarted("r2"), 0.0)
    core.audio_delta(audio("r2", "a2", 100))
    core.server_event(rt.ResponseDone("r2", "completed", None), 0.0)
    core.next_frame()
    assert list(core.server_event(rt.SpeechStarted(0, "u2"), 0.0)) == [rt.Truncate("a2", 20, 0)]
    assert core.stats.barge_ins == 2
    assert sample(core, "sipgw_barge_in_cutoff_seconds_count") == 2
    assert [f["response_id"] for _, f in core.log.find("call.barge_in")] == ["r1", "r2"]
    assert list(core.server_event(rt.SpeechStarted(0, "u3"), 0.0)) == []  # nothing playing
    assert sample(core, "sipgw_barge_in_cutoff_seconds_count") == 2  # no audio cut: not one


def test_a_confirmed_local_hold_logs_its_lead_once() -> None:
    c = call()
    c.core.server_event(rt.ResponseStarted("r1"), 0.0)
    c.core.audio_delta(audio("r1", "a1", 1000))
    c.core.caller_speaking(5.0)
    c.core.server_event(rt.SpeechStarted(0, "u1"), 7.0)  # later than confirm_s: still held
    c.core.server_event(rt.ResponseStarted("r2"), 0.0)
    c.core.audio_delta(audio("r2", "a2", 1000))
    c.core.server_event(rt.SpeechStarted(0, "u2"), 8.0)  # no hold this time
    assert c.log.find("call.local_barge_in_confirmed") == [{"lead_ms": 2000}]


def test_the_replay_cuts_with_the_playbacks_figure_not_later_deltas() -> None:
    """The core hands the conversation the audio the playback had received when the caller
    cut in; deltas the conversation sees afterwards were never played."""
    c = call()
    text = "one two three four five six seven eight nine ten"
    for event in (rt.ResponseStarted("r1"), audio("r1", "a1", 1000)):
        c.conversation.observe(event)
        c.core.server_event(event, 0.0)
    for _ in range(25):  # 500 ms heard
        c.core.next_frame()
    c.core.server_event(rt.SpeechStarted(0, "u1"), 0.0)
    late = audio("r1", "a1", 1000)
    c.conversation.observe(late)  # the link sees it; playback drops it
    c.conversation.observe(rt.Transcript("agent", "a1", text))
    assert c.conversation.replay() == [("assistant", "one two three four five …")]


def test_by_default_speech_does_not_cut_and_a_local_hold_ends_at_once() -> None:
    """CallCore's defaults: no interrupt_response, no confirmation time."""
    playback = Playback(160, clock=lambda: 0.0)
    core = CallCore(
        playback,
        ModelAudio(playback, PCMU, passthrough=True),
        transcript=TranscriptLog(None, LevelLog(), clock=lambda: 0.0, wall=lambda: 0.0),
        conversation=None,
        dtmf=DtmfConfig(),
        log=LevelLog(),
        probe=CallProbe(Metrics(CollectorRegistry())),
    )
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.audio_delta(audio("r1", "a1", 100))
    assert list(core.server_event(rt.SpeechStarted(0, "u1"), 0.0)) == []
    core.caller_speaking(4.0)
    assert core.deadline(4.0) == 4.0


def test_an_entry_ends_at_max_digits() -> None:
    c = call(dtmf={"inter_digit_ms": 5000, "max_digits": 3, "respond": False})
    assert [list(c.core.key(d, 0.1 * i)) for i, d in enumerate("123")] == [
        [],
        [],
        [rt.AddText("user", "[DTMF 123]")],
    ]


def test_audio_done_names_the_content_part() -> None:
    core, _, _ = filed_call()
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.audio_delta(rt.AudioDelta("r1", "a1", 1, b"\xff" * 80))  # 10 ms in part 1
    core.server_event(rt.AudioDone("r1", "a1", 1), 0.0)
    assert core.next_frame() is not None


def test_the_overflow_line_gives_the_buffer_in_seconds_to_a_tenth() -> None:
    core, _, _ = filed_call(max_buffer_s=2.0)
    core.server_event(rt.ResponseStarted("r1"), 0.0)
    core.audio_delta(audio("r1", "a1", 1051))
    core.audio_delta(audio("r1", "a1", 1000))
    [(_, fields)] = core.log.find("playback.overflow")
    assert (fields["buffered_s"], fields["limit_s"]) == (1.1, 2.0)
