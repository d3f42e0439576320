"""CallCore as tables: inputs (server events, frames pulled, keys, ticks, tool results) and the
commands each one must produce. No sockets, no sleeps, no event loop: the time is passed in.

G.711 passthrough keeps the arithmetic exact: 8 bytes of model audio are 1 ms, a 20 ms frame
is 160 of them, and what was heard is the frames pulled times 20 ms.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.bridge.call_limits import CallLimits
from gateway.bridge.core import SPEAK, CallCore, HangUp, RunTool, Transfer
from gateway.bridge.model_audio import ModelAudio
from gateway.bridge.playback import Playback
from gateway.bridge.tools import ToolCall, ask_transfer, transfer_output
from gateway.bridge.transcript import TranscriptLog
from gateway.config import DtmfConfig, TransferTool, parse_config
from gateway.media.g711 import PCMU
from gateway.media.receiver import RtpReceiver
from gateway.metrics import CallProbe
from gateway.realtime import protocol as rt
from gateway.realtime.conversation import Conversation, cut_text

ANSWER = "I can book you a table for two at eight tonight, would that suit you"
END_CALL = ToolCall("call_1", "end_call", "{}")


class Log:
    """Stands in for a structlog logger: keeps (event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def _log(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    debug = info = warning = error = _log

    def find(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.lines if name == event]


@dataclass
class Call:
    core: CallCore
    log: Log
    conversation: Conversation
    transcript: TranscriptLog


def call(
    *,
    greeting: str | None = None,
    interrupts: bool = True,
    dtmf: dict[str, Any] | None = None,
    limits: CallLimits | None = None,
    silence_timeout_s: float | None = None,
) -> Call:
    log = Log()
    transcript = TranscriptLog(None, log, clock=lambda: 0.0, wall=lambda: 0.0)
    playback = Playback(160, on_finished=transcript.agent_played, clock=lambda: 0.0)
    conversation = Conversation(rt.bytes_per_ms("g711"))
    core = CallCore(
        playback,
        ModelAudio(playback, PCMU, passthrough=True),
        transcript=transcript,
        conversation=conversation,
        dtmf=DtmfConfig(**(dtmf or {})),
        log=log,
        probe=CallProbe(),
        greeting=greeting,
        interrupts=interrupts,
        confirm_s=0.3,
        limits=limits,
        silence_timeout_s=silence_timeout_s,
    )
    return Call(core, log, conversation, transcript)


def audio(response: str, item: str, ms: int) -> rt.AudioDelta:
    return rt.AudioDelta(response, item, 0, b"\xff" * (8 * ms))


SALES: TransferTool = parse_config(
    {"agent": {"tools": [{"type": "transfer_call", "targets": {"sales": "sip:600@pbx.example"}}]}}
).agent.tools[0]  # type: ignore[assignment]


class ToCore:
    """The tools' CallControl as the bridge's Actions is one: requests go to the core."""

    def __init__(self, core: CallCore) -> None:
        self.core = core

    def hang_up_after_playback(self) -> None:
        self.core.hang_up_after_words()

    def transfer_after_playback(self, call: ToolCall, destination: str, target: str) -> str | None:
        return self.core.transfer_after_words(call, destination, target)


def run(c: Call, steps: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Feed each step to the core; the commands of each, in order. A step is one of
    ("event", ServerEvent), ("frames", n), ("key", digit, now), ("tick", now),
    ("tool", ToolCall, output), ("hang_up_after_words",), ("transfer_done", ok, detail),
    ("hold", held, now), ("say", text, mode, now)."""
    out: list[list[Any]] = []
    for step in steps:
        match step:
            case ("event", event):
                got = list(c.core.server_event(event, 0.0))
            case ("frames", n):
                got = []
                for _ in range(n):
                    c.core.next_frame()
                    got += c.core.take_due()
            case ("key", digit, now):
                got = list(c.core.key(digit, now))
            case ("tick", now):
                got = list(c.core.tick(now))
            case ("tool", tool_call, output):
                got = list(c.core.tool_done(tool_call, output, 0.0))
            case ("hang_up_after_words",):
                c.core.hang_up_after_words()
                got = []
            case ("transfer_call", tool_call):
                # What the tool does (tools.py), its requests going to the core as Actions
                # sends them; an error output goes back at once, as Actions does.
                arguments = json.loads(tool_call.arguments)
                output = ask_transfer(tool_call, SALES, arguments, ToCore(c.core))
                got = [] if output is None else list(c.core.tool_done(tool_call, output, 0.0))
            case ("transfer_done", ok, detail):
                got = list(c.core.transfer_done(ok, detail, 0.0))
            case ("hold", held, now):
                c.core.hold(held, now)
                got = []
            case ("say", text, mode, now):
                got = list(c.core.say(text, mode, now))
            case _:
                raise AssertionError(f"unknown step {step!r}")
        out.append(got)
    return out


def check(c: Call, table: list[tuple[tuple[Any, ...], list[Any]]]) -> None:
    got = run(c, [step for step, _ in table])
    for (step, expected), commands in zip(table, got, strict=True):
        assert commands == expected, step


# --- the greeting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("greeting", "expected"),
    [("Greet the caller.", [rt.CreateResponse("Greet the caller.")]), (None, []), ("", [])],
)
def test_the_greeting_is_asked_for_once_the_call_is_answered(greeting, expected) -> None:
    assert list(call(greeting=greeting).core.start(0.0)) == expected


# --- barge-in -----------------------------------------------------------------------------------


def test_barge_in_cancels_the_answer_and_truncates_at_exactly_what_was_heard() -> None:
    c = call()
    check(
        c,
        [
            (("event", rt.ResponseStarted("r1")), []),
            (("event", audio("r1", "a1", 1000)), []),
            (("frames", 15), []),  # 300 ms on the wire
            (
                ("event", rt.SpeechStarted(0, "u1")),
                [rt.CancelResponse(), rt.Truncate("a1", 300, 0)],
            ),
            (("frames", 1), []),  # the very next frame is silence
            (("event", audio("r1", "a1", 200)), []),  # a late delta of the cancelled answer
            (("event", rt.AudioDone("r1", "a1")), []),
            (("event", rt.ResponseDone("r1", "cancelled", "turn_detected")), []),
        ],
    )
    assert c.core.next_frame() is None and c.core.playback.buffered_ms == 0
    assert c.core.stats.barge_ins == 1 and c.core.stats.deltas_dropped == 1
    [cut] = c.log.find("call.barge_in")
    assert (cut["item_id"], cut["heard_ms"], cut["received_ms"]) == ("a1", 300, 1000)


def test_speech_over_silence_cuts_nothing_and_sends_nothing() -> None:
    c = call()
    check(
        c,
        [
            (("event", rt.SpeechStarted(0, "u1")), []),
            (("event", rt.ResponseStarted("r1")), []),
            (("event", audio("r1", "a1", 100)), []),
            (("frames", 5), []),  # all of it heard
            (("event", rt.AudioDone("r1", "a1")), []),
            (("event", rt.ResponseDone("r1", "completed", None)), []),
            (("event", rt.SpeechStarted(0, "u2")), []),
        ],
    )
    assert c.core.stats.barge_ins == 0


def test_without_interrupt_response_the_answer_plays_on() -> None:
    c = call(interrupts=False)
    check(
        c,
        [
            (("event", rt.ResponseStarted("r1")), []),
            (("event", audio("r1", "a1", 400)), []),
            (("frames", 2), []),
            (("event", rt.SpeechStarted(0, "u1")), []),
        ],
    )
    assert c.core.playback.buffered_ms == 360


def test_a_barge_in_after_the_answer_was_sent_truncates_without_cancelling() -> None:
    """The model has finished sending (response.done) but its audio still plays."""
    c = call()
    check(
        c,
        [
            (("event", rt.ResponseStarted("r1")), []),
            (("event", audio("r1", "a1", 1000)), []),
            (("event", rt.AudioDone("r1", "a1")), []),
            (("event", rt.ResponseDone("r1", "completed", None)), []),
            (("frames", 10), []),
            (("event", rt.SpeechStarted(0, "u1")), [rt.Truncate("a1", 200, 0)]),
        ],
    )


# --- how much was heard: one rule for the transcript and the replay -----------------------------


def test_the_interrupted_answer_is_replayed_cut_as_the_transcript_says_it_was_heard() -> None:
    """After a reconnect the new session is told the answer as far as it was heard (not in
    full), and the transcript file says the same words."""
    c = call()
    steps = [
        ("event", rt.SpeechStarted(0, "u1")),
        ("event", rt.Transcript("caller", "u1", "A table for two, please.")),
        ("event", rt.ResponseStarted("r1")),
        ("event", audio("r1", "a1", 2000)),
        ("frames", 40),  # 800 of 2000 ms heard
        ("event", rt.SpeechStarted(0, "u2")),
        ("event", rt.Transcript("agent", "a1", ANSWER)),  # the transcript comes after the cut
    ]
    for event in (s[1] for s in steps if s[0] == "event"):
        c.conversation.observe(event)  # what the link sees of the same events
    run(c, steps)
    heard = cut_text(ANSWER, 800, 2000)
    assert heard and heard != ANSWER
    assert c.conversation.replay() == [
        ("user", "A table for two, please."),
        ("assistant", heard + " …"),
    ]
    [agent] = [f for e, f in c.log.lines if e == "call.transcript" and f["role"] == "agent"]
    assert agent["text"] == heard and agent["heard_ms"] == 800 and agent["interrupted"]


# --- hang-up after the last words ---------------------------------------------------------------


def test_end_call_hangs_up_once_the_last_words_have_been_heard() -> None:
    c = call()
    check(
        c,
        [
            (("event", rt.ResponseStarted("r1")), []),
            (
                ("event", rt.FunctionCall("r1", "f1", "call_1", "end_call", "{}")),
                [RunTool(END_CALL)],
            ),
            (("hang_up_after_words",), []),
            (("tool", END_CALL, '{"ok": true}'), [rt.FunctionOutput("call_1", '{"ok": true}')]),
            (("event", audio("r1", "a1", 100)), []),
            (("frames", 5), []),  # the goodbye played, but the answer is still running
            (("frames", 1), []),
            (("event", rt.AudioDone("r1", "a1")), []),
            (("event", rt.ResponseDone("r1", "completed", None)), []),
            (("frames", 1), [HangUp("agent_hangup")]),
        ],
    )


def test_end_call_waits_for_audio_still_queued() -> None:
    c = call()
    check(
        c,
        [
            (("event", rt.ResponseStarted("r1")), []),
            (("event", audio("r1", "a1", 200)), []),
            (("event", rt.AudioDone("r1", "a1")), []),
            (("event", rt.ResponseDone("r1", "completed", None)), []),
            (("hang_up_after_words",), []),
            (("frames", 9), []),  # 180 of 200 ms
            (("frames", 1), []),  # the last frame of the goodbye
            (("frames", 1), [HangUp("agent_hangup")]),
        ],
    )


# --- transfer ----------------------------------------------------------------------------------

TRANSFER = ToolCall("call_9", "transfer_call", '{"destination": "sales"}')
TRANSFER_EVENT = rt.FunctionCall("r1", "f9", "call_9", "transfer_call", '{"destination": "sales"}')
TO_SALES = Transfer("sip:600@pbx.example")


def asked_to_transfer(tool_call: ToolCall = TRANSFER) -> list[tuple[tuple[Any, ...], list[Any]]]:
    """The model says its words, calls transfer_call and finishes its answer."""
    return [
        (("event", rt.ResponseStarted("r1")), []),
        (("event", audio("r1", "a1", 100)), []),
        (
            (
                "event",
                rt.FunctionCall("r1", "f9", tool_call.call_id, tool_call.name, tool_call.arguments),
            ),
            [RunTool(tool_call)],
        ),
        (("transfer_call", tool_call), []),  # the output waits for the outcome
        (("frames", 5), []),  # the words played, but the answer still runs
        (("event", rt.ResponseDone("r1", "completed", None)), []),
    ]


def test_an_accepted_transfer_starts_after_the_words_and_ends_the_call() -> None:
    c = call()
    check(
        c,
        [
            *asked_to_transfer(),
            (("frames", 1), [TO_SALES]),  # the words are heard: now the REFER
            (("frames", 3), []),  # once only
            (
                ("transfer_done", True, ""),
                [
                    rt.FunctionOutput("call_9", transfer_output("sales", True, "")),
                    HangUp("transferred"),
                ],
            ),
            (("frames", 1), []),
        ],
    )
    assert json.loads(transfer_output("sales", True, ""))["ok"] is True


def test_a_refused_transfer_is_told_to_the_model_and_the_call_goes_on() -> None:
    c = call()
    failed = transfer_output("sales", False, "SIP/2.0 486 Busy Here")
    check(
        c,
        [
            *asked_to_transfer(),
            (("frames", 1), [TO_SALES]),
            (
                ("transfer_done", False, "SIP/2.0 486 Busy Here"),
                [rt.FunctionOutput("call_9", failed), rt.CreateResponse()],
            ),
            (("event", rt.ResponseStarted("r2")), []),
            (("event", audio("r2", "a2", 100)), []),
            (("event", rt.ResponseDone("r2", "completed", None)), []),
            (("frames", 10), []),  # the model says so; nothing ends the call
        ],
    )
    assert c.core.hang_up is None
    assert "486 Busy Here" in failed and "still here" in failed


def test_an_unknown_target_is_refused_at_once_and_nothing_is_transferred() -> None:
    paris = ToolCall("call_9", "transfer_call", '{"destination": "paris"}')
    error = ask_transfer(paris, SALES, {"destination": "paris"}, ToCore(call().core))
    assert error is not None and "unknown destination 'paris'" in error
    c = call()
    check(
        c,
        [
            (("event", rt.ResponseStarted("r1")), []),
            (
                ("event", rt.FunctionCall("r1", "f9", "call_9", "transfer_call", paris.arguments)),
                [RunTool(paris)],
            ),
            (("transfer_call", paris), [rt.FunctionOutput("call_9", error)]),  # r1 still runs
            (("event", rt.ResponseDone("r1", "completed", None)), [rt.CreateResponse()]),
            (("frames", 5), []),  # no REFER, ever
        ],
    )


def test_a_second_transfer_while_one_is_under_way_is_refused() -> None:
    c = call()
    again = ToolCall("call_10", "transfer_call", '{"destination": "sales"}')
    run(c, [step for step, _ in asked_to_transfer()])
    out = run(c, [("transfer_call", again)])
    [[output, *_]] = out
    assert isinstance(output, rt.FunctionOutput) and output.call_id == "call_10"
    assert "already under way" in json.loads(output.output)["error"]
    assert run(c, [("frames", 1)]) == [[TO_SALES]]  # the first one goes on


def test_end_call_during_a_transfer_not_yet_started_wins() -> None:
    c = call()
    check(
        c,
        [
            *asked_to_transfer(),
            (("hang_up_after_words",), []),
            (("frames", 1), [HangUp("agent_hangup")]),
            (("transfer_done", True, ""), []),  # no outcome is owed: nothing started
        ],
    )


# --- the call's time: longest duration, hold, RTP silence ----------------------------------------

CALLER = ("127.0.0.1", 4000)


def rtp_packet(seq: int) -> bytes:
    """A PCMU packet of 20 ms (RFC 3550 §5.1 header, payload type 0)."""
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xCAFE) + b"\xff" * 160


def timed(
    max_call_s: float = 3600, hold_timeout_s: float = 600, rtp_timeout_s: float = 0
) -> tuple[Call, RtpReceiver]:
    """A call answered at 1000.0 whose limits read a real RTP receiver's silence count."""
    rx = RtpReceiver(0, CALLER)
    c = call(limits=CallLimits(max_call_s, hold_timeout_s, rtp_timeout_s, rx))
    c.core.start(1000.0)
    return c, rx


def test_the_call_ends_at_its_longest_duration() -> None:
    c, _ = timed(max_call_s=60)
    assert c.core.deadline(1000.0) == 1060.0
    check(c, [(("tick", 1059.9), []), (("tick", 1060.0), [HangUp("max_call_duration")])])
    assert c.core.deadline(1060.0) is None and c.core.tick(1100.0) == ()
    [line] = c.log.find("call.time_limit")
    assert line["reason"] == "max_call_duration" and line["max_call_s"] == 60


def test_a_hold_too_long_ends_the_call_and_a_resume_clears_it() -> None:
    c, _ = timed(hold_timeout_s=30)
    check(
        c,
        [
            (("hold", True, 1010.0), []),
            (("tick", 1039.0), []),
            (("hold", False, 1039.0), []),
            (("tick", 1040.0), []),  # the first hold's end is gone
            (("hold", True, 1100.0), []),
            (("hold", True, 1120.0), []),  # a refresh keeps the hold's start
            (("tick", 1130.04), [HangUp("hold_timeout")]),
        ],
    )
    [line] = c.log.find("call.time_limit")
    assert (line["reason"], line["max_call_s"], line["hold_timeout_s"]) == (
        "hold_timeout",
        3600,
        30,
    )
    assert line["held_s"] == 30.0 and type(line["held_s"]) is float  # to a tenth of a second


def test_rtp_silence_ends_the_call_but_not_while_held() -> None:
    c, rx = timed(rtp_timeout_s=5)
    assert c.core.deadline(1000.0) == 1005.0  # counted from the answer
    for seq, now in enumerate([1001.0, 1002.0, 1003.0]):
        rx.receive(rtp_packet(seq), CALLER, now)
    assert c.core.deadline(1003.0) == 1008.0  # each packet moves it on
    check(c, [(("tick", 1005.0), []), (("tick", 1007.9), [])])
    rx.hold(True, 1007.9)
    c.core.hold(True, 1007.9)
    check(c, [(("tick", 1100.0), [])])  # a holding caller may send nothing
    rx.hold(False, 1200.0)
    c.core.hold(False, 1200.0)
    check(c, [(("tick", 1204.9), []), (("tick", 1205.04), [HangUp("rtp_timeout")])])
    [line] = c.log.find("call.rtp_timeout")
    assert line == {"silent_s": 5.0} and type(line["silent_s"]) is float  # to a tenth


def test_an_rtp_timeout_of_zero_never_ends_the_call() -> None:
    c, _ = timed(max_call_s=100_000, rtp_timeout_s=0)
    check(c, [(("tick", 5000.0), [])])
    assert c.core.deadline(5000.0) == 101_000.0


# --- tools ----------------------------------------------------------------------------------------


def test_a_tools_result_is_answered_once_the_model_is_free() -> None:
    order = ToolCall("call_2", "order", '{"id": 7}')
    c = call()
    check(
        c,
        [
            (("event", rt.ResponseStarted("r1")), []),
            (
                ("event", rt.FunctionCall("r1", "f1", "call_2", "order", '{"id": 7}')),
                [RunTool(order)],
            ),
            # The output goes at once; the model may not answer while r1 runs.
            (
                ("tool", order, '{"status": "shipped"}'),
                [rt.FunctionOutput("call_2", '{"status": "shipped"}')],
            ),
            (("event", rt.ResponseDone("r1", "completed", None)), [rt.CreateResponse()]),
            (("event", rt.ResponseStarted("r2")), []),
            (("event", rt.ResponseDone("r2", "completed", None)), []),
            # A result when nothing runs: answered at once.
            (("tool", order, "{}"), [rt.FunctionOutput("call_2", "{}"), rt.CreateResponse()]),
        ],
    )


# --- keys -----------------------------------------------------------------------------------------


def test_keys_are_gathered_into_one_entry_and_one_response() -> None:
    c = call(dtmf={"inter_digit_ms": 2000})
    check(
        c,
        [
            (("key", "1", 10.0), []),
            (("key", "2", 10.5), []),
            (("tick", 12.0), []),  # 1.5 s after the last key: not yet
            (("tick", 12.5), [rt.AddText("user", "[DTMF 12]"), rt.CreateResponse()]),
            (("event", rt.ResponseStarted("r1")), []),
            # While the model answers: entries go at once, one response after it for both.
            (("key", "3", 20.0), []),
            (("key", "#", 20.2), [rt.AddText("user", "[DTMF 3#]")]),
            (("key", "4", 21.0), []),
            (("tick", 23.0), [rt.AddText("user", "[DTMF 4]")]),
            (("event", rt.ResponseDone("r1", "completed", None)), [rt.CreateResponse()]),
        ],
    )
    assert [f["digit"] for f in c.log.find("call.dtmf")] == ["1", "2", "3", "#", "4"]


def test_the_deadline_is_when_the_entry_is_due() -> None:
    c = call(dtmf={"inter_digit_ms": 2000})
    assert c.core.deadline(0.0) is None
    c.core.key("5", 100.0)
    assert c.core.deadline(100.0) == pytest.approx(102.0)
    c.core.tick(102.0)
    assert c.core.deadline(102.0) is None


def test_keys_without_respond_reach_the_model_as_text_only() -> None:
    c = call(dtmf={"respond": False, "inter_digit_ms": 0})
    check(c, [(("key", "7", 0.0), [rt.AddText("user", "[DTMF 7]")])])


def test_keys_beyond_the_keypads_rate_are_dropped_and_logged_once() -> None:
    c = call(dtmf={"inter_digit_ms": 0, "respond": False})
    sent = [cmd for _ in range(40) for cmd in c.core.key("1", 0.0)]
    assert len(sent) == 20  # the burst
    assert len(c.log.find("call.dtmf_dropped")) == 1


# --- local pre-emption ---------------------------------------------------------------------------


def test_a_local_barge_in_holds_playback_until_confirmed_or_released() -> None:
    c = call()
    run(c, [("event", rt.ResponseStarted("r1")), ("event", audio("r1", "a1", 1000))])
    c.core.caller_speaking(5.0)
    assert c.core.playback.held and c.core.deadline(5.0) == pytest.approx(5.3)
    assert c.core.next_frame() is None
    assert list(c.core.tick(5.3)) == [] and not c.core.playback.held
    assert c.core.stats.local_unconfirmed == 1
    assert c.core.next_frame() is not None  # released: the answer plays on
    c.core.caller_speaking(6.0)
    assert c.core.next_frame() is None  # held again
    assert list(c.core.server_event(rt.SpeechStarted(0, "u1"), 6.1)) == [
        rt.CancelResponse(),
        rt.Truncate("a1", 20, 0),  # only the one frame played between the two holds
    ]
    assert c.core.deadline(6.1) is None
    assert c.log.find("call.local_barge_in_confirmed") == [{"lead_ms": 100}]


# --- the control API's say ------------------------------------------------------------------------


def test_speak_cuts_the_answer_like_a_barge_in_and_speaks_once_the_service_is_done() -> None:
    c = call()
    spoken = rt.CreateResponse(SPEAK.format(text="Your order has shipped."))
    check(
        c,
        [
            (("event", rt.ResponseStarted("r1")), []),
            (("event", audio("r1", "a1", 1000)), []),
            (("frames", 10), []),  # 200 ms heard
            (
                ("say", "Your order has shipped.", "speak", 1.0),
                [rt.CancelResponse(), rt.Truncate("a1", 200, 0)],
            ),
            (("event", rt.ResponseDone("r1", "cancelled", "client_cancelled")), [spoken]),
            (("event", rt.ResponseStarted("r2")), []),
            (("event", rt.ResponseDone("r2", "completed", None)), []),  # nothing more owed
        ],
    )
    [cut] = c.log.find("call.barge_in")
    assert (cut["item_id"], cut["heard_ms"]) == ("a1", 200) and c.core.stats.barge_ins == 1


def test_speak_over_silence_is_one_response_at_once() -> None:
    c = call()
    check(
        c,
        [
            (
                ("say", "Hello again.", "speak", 0.0),
                [rt.CreateResponse(SPEAK.format(text="Hello again."))],
            ),
            (("say", "And again.", "speak", 0.1), []),  # ours is on its way: owed
            (
                ("event", rt.ResponseDone("r1", "completed", None)),
                [rt.CreateResponse(SPEAK.format(text="And again."))],
            ),
        ],
    )


def test_instruct_tells_the_model_and_lets_it_answer_when_no_answer_runs() -> None:
    c = call()
    check(
        c,
        [
            (
                ("say", "The caller is a gold customer.", "instruct", 0.0),
                [rt.AddText("system", "The caller is a gold customer."), rt.CreateResponse()],
            ),
            (("event", rt.ResponseStarted("r1")), []),
            (
                ("say", "Offer the upgrade.", "instruct", 0.5),
                [rt.AddText("system", "Offer the upgrade.")],
            ),
            (("event", rt.ResponseDone("r1", "completed", None)), [rt.CreateResponse()]),
        ],
    )
