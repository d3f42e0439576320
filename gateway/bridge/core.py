"""One call's behaviour as a plain object: no asyncio, no sockets, the time passed in.

Like websockets' ``Protocol`` beside its asyncio ``Connection``, or h11's ``Connection``
beside a socket: :class:`CallCore` takes what happens on a call (a server event, a key, a
tool's result, the pacer asking for a frame, time passing) and answers with typed commands:
the model's (``rt.CreateResponse``, ``rt.CancelResponse``, ``rt.Truncate``, ``rt.AddText``,
``rt.FunctionOutput``, encoded by the link in its session's dialect) and the call's
(:class:`RunTool`, :class:`HangUp`, :class:`Transfer`). The asyncio shell
(:class:`~.call.CallBridge`) feeds it and runs the commands, in the order given; a unit test
feeds it a table of inputs and compares the commands.

It alone decides which answer is running and whether the caller is owed one (the service
refuses a second ``response.create`` while one runs), when the agent's last words have been
heard (then a hang-up or a transfer goes), when the call's time is up (its longest duration,
a hold too long, no RTP; :class:`~.ending.CallEnd` keeps these), and how much of an
interrupted answer was heard: the playback's accounting (``ItemAccount.heard_ms`` of
``received_ms``, the wire truth) goes into the truncate, into the transcript and into the
context a new session is given, cut by one rule (:func:`gateway.realtime.conversation.cut_text`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import DtmfConfig
from ..metrics import CallProbe
from ..realtime import protocol as rt
from ..realtime.conversation import Conversation
from .call_limits import CallLimits
from .ending import TRANSFERRED, CallEnd, HangUp, Transfer, TransferAsked
from .keypad import KEYS_PER_S, Keypad, dtmf_message
from .model_audio import ModelAudio
from .playback import ItemAccount, ItemKey, Playback
from .screening import TOLD, VOICEMAIL_LEFT, AnswerScreen, Decided, LeaveMessage, Outcome
from .tools import ToolCall
from .transcript import TranscriptLog

MALFORMED_LOG_EVERY = 100  # a service sending garbage gets a log line per this many frames
ERRORS_LOGGED_IN_FULL = 10  # service error events of a call logged each, before the above
MAX_LOGGED_MESSAGE = 500  # characters of a service error's message in the log
KEY_DROP_LOG_EVERY = 100
# A text the control API has the agent speak, as the answer's own instructions.
SPEAK = "Say exactly the following text to the caller, word for word, and nothing else:\n{text}"


@dataclass(frozen=True, slots=True)
class RunTool:
    """Run the model's function call; its output comes back through ``CallCore.tool_done``."""

    call: ToolCall


Command = rt.ClientCommand | RunTool | HangUp | Transfer | Decided | LeaveMessage
NOTHING: tuple[Command, ...] = ()  # the common answer, with no allocation
__all__ = ["TRANSFERRED", "CallCore", "CallStats", "Command", "HangUp", "RunTool", "Transfer"]


@dataclass
class CallStats:
    uplink_dropped: int = 0
    deltas_dropped: int = 0
    barge_ins: int = 0
    local_barge_ins: int = 0
    local_unconfirmed: int = 0
    responses: int = 0
    service_errors: int = 0
    malformed_events: int = 0
    playback_dropped_ms: int = 0
    usage: dict[str, int] = field(default_factory=dict)


class CallCore:
    """The turn and response state of one call, and what follows from each input."""

    def __init__(
        self,
        playback: Playback,
        audio: ModelAudio,
        *,
        transcript: TranscriptLog,
        conversation: Conversation | None,
        dtmf: DtmfConfig,
        log: Any,
        probe: CallProbe,
        greeting: str | None = None,
        interrupts: bool = False,
        confirm_s: float = 0.0,
        limits: CallLimits | None = None,
        silence_timeout_s: float | None = None,
        screen: AnswerScreen | None = None,
    ) -> None:
        self.playback = playback
        self.audio = audio
        self.transcript = transcript
        self.conversation = conversation
        self.log = log
        self.probe = probe
        self.stats = CallStats()
        # After the agent's words, when time is up; and what the model is told before.
        self.ending = CallEnd(limits, log, silence_timeout_s)
        self._greeting = greeting
        self._interrupts = interrupts  # speech_started cuts the answer (interrupt_response)
        self._keypad = Keypad(dtmf.inter_digit_ms, dtmf.max_digits)
        self._respond_to_keys = dtmf.respond
        self._confirm_s = confirm_s  # how long a local barge-in holds playback unconfirmed
        # The answer in progress, as the service tells (created .. done), or asked by us.
        self._active_response: str | None = None  # running and not cancelled by us
        self._cancelled: set[str] = set()  # responses whose late deltas are dropped
        self._responding = False  # a response runs or our response.create is on its way
        self._owed = False  # a response.create waits for the one in progress to end
        self._owed_instructions: str | None = None  # and the instructions it carries
        self._overflowing: ItemKey | None = None  # the item whose audio is being dropped
        self._held_at: float | None = None  # local pre-emption waiting for the service
        self._unhold_at: float | None = None
        self.due: list[Command] = []  # from next_frame, for the shell to take (take_due)
        self.screen = screen  # answering-machine detection (screening.py), before anything

    # --- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> Sequence[Command]:
        """The call is answered: its time counts from now; the greeting, if any (AMD first)."""
        self.ending.answered(now)
        if self.screen is not None or not self._greeting:
            return _screening(self, now)
        return [rt.CreateResponse(self._greeting)]

    def server_event(self, event: rt.ServerEvent, now: float) -> Sequence[Command]:
        match event:
            case rt.AudioDelta():  # the shell calls audio_delta itself, on its hot path
                self.audio_delta(event)
            case rt.AudioDone():
                if event.response_id not in self._cancelled:
                    self.audio.done(ItemKey(event.response_id, event.item_id, event.content_index))
            case rt.SpeechStarted():
                self.ending.guards.caller_active()
                self.transcript.speech_started(event.item_id)
                if self._interrupts:
                    return self._barge_in(now)
            case rt.ResponseStarted():
                self.ending.guards.agent_talking()
                self._responding = True
                self._active_response = event.response_id
                self.stats.responses += 1
            case rt.ResponseDone():
                if event.status != "cancelled":  # cancelled: the caller talks, or we go on
                    _quiet_from(self, now)
                return self._response_done(event)
            case rt.FunctionCall():
                self.ending.guards.agent_talking()  # working: its answer comes with the output
                return [RunTool(ToolCall(event.call_id, event.name, event.arguments))]
            case rt.Transcript(role="caller"):
                self.transcript.caller_said(event.item_id, event.text)
            case rt.Transcript():
                self.transcript.agent_said(event.item_id, event.text)
            case rt.TranscriptDelta():
                self.transcript.agent_delta(event.item_id, event.delta)
            case rt.Malformed():
                _malformed(self, event)
            case rt.ServiceError():
                _service_error(self, event)
            case _:
                pass
        return NOTHING

    def next_frame(self) -> np.ndarray | None:
        """The pacer's frame (None: silence). Once the agent's last words are out, what it
        asked for then (a hang-up, a transfer) goes into :attr:`due`."""
        frame = self.playback.next_frame()
        if frame is not None:
            if self.probe.downlink_since is not None:
                self.probe.audio_played()
        elif (
            self.ending.after_words is not None
            and not self._responding
            and not self.playback.buffered_ms
            and (command := self.ending.words_heard()) is not None
        ):
            self.due.append(command)
        return frame

    def callee_audio(self, pcm: np.ndarray, now: float) -> Sequence[Command]:
        """The callee's PCM16, while the answering-machine detection listens."""
        return _screened(self, self.screen.audio(pcm, now), now) if self.screen else NOTHING

    def take_due(self) -> Sequence[Command]:
        """The commands :meth:`next_frame` found due (the pacer's path has no return for them)."""
        due, self.due = self.due, []
        return due

    def caller_speaking(self, now: float) -> None:
        """The gateway's own VAD heard the caller start: hold playback (local pre-emption)
        until the service confirms with speech_started, or ``confirm_s`` passes."""
        if not self.playback.buffered_ms or self.playback.held:
            return
        self.playback.hold()
        self._held_at = now
        self._unhold_at = now + self._confirm_s
        self.stats.local_barge_ins += 1
        self.log.debug("call.local_barge_in")

    def key(self, digit: str, now: float, **detail: Any) -> Sequence[Command]:
        """A key from the caller (RFC 4733 or SIP INFO; `detail` goes in the log line); keys
        beyond the keypad's rate are dropped (the first drop, and every KEY_DROP_LOG_EVERY-th,
        is logged)."""
        if not self._keypad.accept(now):
            if self._keypad.dropped % KEY_DROP_LOG_EVERY == 1:
                self.log.warning(
                    "call.dtmf_dropped", dropped=self._keypad.dropped, limit_per_s=KEYS_PER_S
                )
            return NOTHING
        self.log.info("call.dtmf", digit=digit, **detail)
        self.ending.guards.caller_active()
        entry = self._keypad.press(digit, now)
        return _key_entry(self, entry) if entry is not None else NOTHING

    def hold(self, held: bool, now: float) -> None:
        """Hold (its timeout runs; a held caller is not silent) or resume."""
        self.ending.hold(held, now)
        if held or self._responding:
            self.ending.guards.agent_talking()
        else:
            _quiet_from(self, now)

    def tick(self, now: float) -> Sequence[Command]:
        """Time passed: call at :meth:`deadline` (earlier or later is harmless)."""
        if (hang_up := self.ending.time_up(now)) is not None:
            return [hang_up]
        told = [c for text in self.ending.guards_due(now) for c in self._tell(text)]
        told += _screened(self, self.screen.tick(now), now) if self.screen else NOTHING
        if self._unhold_at is not None and now >= self._unhold_at:
            _unconfirmed(self)
        entry = self._keypad.due(now)
        return [*told, *_key_entry(self, entry)] if entry is not None else (told or NOTHING)

    def deadline(self, now: float) -> float | None:
        """When :meth:`tick` is next due, as known at ``now``: a key entry's pause, a local
        hold's end, the call's time limits, the wrap-up and silence guards, AMD's wait."""
        screen = self.screen.deadline if self.screen is not None else None
        times = [
            t
            for t in (self._keypad.deadline, self._unhold_at, self.ending.deadline(now), screen)
            if t is not None
        ]
        return min(times) if times else None

    def tool_done(self, call: ToolCall, output: str, now: float) -> Sequence[Command]:
        """A tool's output: to the model, which then speaks about it (unless the call ends)."""
        commands: list[Command] = [rt.FunctionOutput(call.call_id, output)]
        if not self.ending.pending:
            commands += self._respond()
        return commands

    def say(self, text: str, mode: str, now: float) -> Sequence[Command]:
        """The control API's text: spoken now word for word (what was playing is cut as by a
        barge-in), or told to the model, which answers when free (instruct)."""
        if mode == "instruct":
            return self._tell(text)
        return [*self._barge_in(now), *self._respond(SPEAK.format(text=text))]

    def hang_up_after_words(self, reason: str = "agent_hangup") -> None:
        """The agent ends the call once what it is saying has been heard (end_call); a
        transfer not yet started gives way to it."""
        self.ending.hang_up_after_words(reason)

    def transfer_after_words(
        self, call: ToolCall, destination: str, target: str, mode: str = "blind", summary: str = ""
    ) -> str | None:
        """The model transfers the caller (transfer_call, to a configured target): once its
        words are heard, :class:`Transfer`; the tool's output waits for the outcome. A
        reason when it cannot be done."""
        asked = TransferAsked(call, destination, target, mode, summary)
        return self.ending.transfer_after_words(asked)

    def transfer_done(self, ok: bool, detail: str, now: float) -> Sequence[Command]:
        """The transfer's outcome: the model is told; accepted, the call ends; refused, the
        model answers (it can tell the caller). Ignored once the call is ending."""
        output, answer = self.ending.transfer_done(ok, detail)
        if output is None:
            return NOTHING
        commands: list[Command] = [output]
        if self.ending.hang_up is not None:
            commands.append(self.ending.hang_up)
        elif answer:
            commands += self._respond()
        return commands

    @property
    def hang_up(self) -> HangUp | None:
        """The call's end, once given."""
        return self.ending.hang_up

    def end(self) -> None:
        """The call is over: what was playing ends here, for the transcript."""
        self.playback.interrupt()

    @property
    def responding(self) -> bool:
        """An answer runs, or our request for one is on its way."""
        return self._responding

    # --- the model's answer -------------------------------------------------------------------

    def _respond(self, instructions: str | None = None) -> Sequence[Command]:
        """A response.create now, or once the answer in progress is done (the service
        refuses a second one while one runs)."""
        if self._responding:
            self._owed = True
            self._owed_instructions = instructions or self._owed_instructions
            return NOTHING
        self._responding = True  # ours now; response.created/done keep it true to the service
        return [rt.CreateResponse(instructions)]

    def _tell(self, text: str) -> list[Command]:
        """A system message for the model, and its answer when it is free."""
        return [rt.AddText("system", text), *self._respond()]

    def audio_delta(self, event: rt.AudioDelta) -> None:
        """The model's audio into playback (no command follows one, nor does time matter)."""
        if event.response_id in self._cancelled:
            self.stats.deltas_dropped += 1
            return
        key = ItemKey(event.response_id, event.item_id, event.content_index)
        playback = self.playback
        self.probe.audio_arrived(playback_idle=playback.buffered_ms == 0)
        dropped = playback.dropped_samples
        self.audio.delta(key, event.audio)
        if playback.dropped_samples != dropped:
            _overflow(self, key, playback.dropped_samples - dropped)

    def _response_done(self, event: rt.ResponseDone) -> Sequence[Command]:
        if self._active_response == event.response_id:
            self._active_response = None
        self._cancelled.discard(event.response_id)  # no delta of it can follow
        # No more audio for its items, even if an output_audio.done was never sent.
        for key in [k for k in self.playback.items if k.response_id == event.response_id]:
            self.audio.done(key)
        self.probe.response_done(event.usage)
        _count_usage(self.stats, event.usage)
        self.log.info("realtime.response_done", status=event.status, reason=event.reason)
        self._responding = False
        if self._owed:
            self._owed = False
            instructions, self._owed_instructions = self._owed_instructions, None
            return self._respond(instructions)
        return NOTHING

    def _barge_in(self, now: float) -> Sequence[Command]:
        """The caller talks over the model: stop playback now, tell the model what was heard."""
        cut = self.playback.interrupt()  # the very next pacer tick sends silence
        self.probe.flushed(now, cut_audio=bool(cut))
        self.audio.cut()
        self._unhold_at = None
        if self._held_at is not None:
            lead_ms = round((now - self._held_at) * 1000)
            self.log.info("call.local_barge_in_confirmed", lead_ms=lead_ms)
            self._held_at = None
        commands: list[Command] = []
        if self._active_response is not None:
            # The service may have cancelled it already (interrupt_response): then this
            # only earns a benign response_cancel_not_active.
            self._cancelled.add(self._active_response)
            commands.append(rt.CancelResponse())
            self._active_response = None
        for item in cut:
            commands.append(rt.Truncate(item.key.item_id, item.heard_ms, item.key.content_index))
            if self.conversation is not None:
                self.conversation.cut(item.key.item_id, item.heard_ms, item.received_ms)
            _log_cut(self.log, item)
        if commands:
            self.stats.barge_ins += 1
        return commands


def _quiet_from(core: CallCore, now: float) -> None:
    """The silence guard counts from the agent's last words, once what is buffered is heard."""
    core.ending.guards.agent_quiet(now + core.playback.buffered_ms / 1000)


def _key_entry(core: CallCore, entry: str) -> Sequence[Command]:
    """A key entry for the model. One response answers every entry sent before it."""
    core.log.info("call.dtmf_to_model", keys=entry)
    commands: list[Command] = [rt.AddText("user", dtmf_message(entry))]
    if core._respond_to_keys:
        commands += core._respond()
    return commands


# --- answering-machine detection --------------------------------------------------------------


def _screening(core: CallCore, now: float) -> Sequence[Command]:
    """No greeting; or the answer is screened first: the agent's first words wait for the
    decision, and the silence guard does not count meanwhile."""
    if core.screen is None:
        return NOTHING
    core.screen.start(now)
    core.ending.guards.agent_talking()
    return NOTHING


def _screened(core: CallCore, outcomes: Sequence[Outcome], now: float) -> list[Command]:
    """What the detection's outcomes ask of the call: each goes to the shell (log, event,
    record); the model is told; a person hears the agent's first words; a machine in
    voicemail mode hears the message, then the call ends."""
    commands: list[Command] = []
    for outcome in outcomes:
        commands.append(outcome)
        if isinstance(outcome, LeaveMessage):
            core.hang_up_after_words(VOICEMAIL_LEFT)
            commands += core._respond(SPEAK.format(text=outcome.message))
        elif not outcome.waits_for_beep:
            commands.append(rt.AddText("system", TOLD[outcome.decision.result]))
            if outcome.speaks_first:
                commands += core._respond(core._greeting)
            else:
                _quiet_from(core, now)  # the model answers when the greeting pauses
    return commands


# --- what the service says is wrong -----------------------------------------------------------


def _unconfirmed(core: CallCore) -> None:
    """A local hold the service did not confirm in time: the answer plays on."""
    core.playback.release()
    core._held_at = core._unhold_at = None
    core.stats.local_unconfirmed += 1
    core.log.info("call.local_barge_in_unconfirmed")


def _count_usage(stats: CallStats, usage: Mapping[str, Any]) -> None:
    """A response's token counts, added to the call's."""
    for name, value in usage.items():
        if isinstance(value, int):
            stats.usage[name] = stats.usage.get(name, 0) + value


def _overflow(core: CallCore, key: ItemKey, samples: int) -> None:
    """Model audio beyond media.playback_buffer_s was dropped: counted, logged per item."""
    ms = samples / 8
    core.stats.playback_dropped_ms += round(ms)
    core.probe.playback_dropped(ms / 1000)
    if key != core._overflowing:
        core._overflowing = key
        core.log.warning(
            "playback.overflow",
            response_id=key.response_id,
            item_id=key.item_id,
            buffered_s=round(core.playback.buffered_ms / 1000, 1),
            limit_s=core.playback.max_buffer_s,
        )


def _log_cut(log: Any, item: ItemAccount) -> None:
    log.info(
        "call.barge_in",
        response_id=item.key.response_id,
        item_id=item.key.item_id,
        heard_ms=item.heard_ms,
        received_ms=round(item.received_ms),
    )


def _malformed(core: CallCore, event: rt.Malformed) -> None:
    """Counted always, logged now and then: a service sending garbage cannot flood the log."""
    core.stats.malformed_events += 1
    core.probe.realtime_error("malformed_event")
    if core.stats.malformed_events % MALFORMED_LOG_EVERY == 1:
        core.log.warning(
            "realtime.malformed_event",
            reason=event.reason,
            excerpt=event.excerpt,
            count=core.stats.malformed_events,
        )


def _service_error(core: CallCore, event: rt.ServiceError) -> None:
    core.stats.service_errors += 1
    core.probe.realtime_error(event.code or "no_code")
    # The first few in full, then one per MALFORMED_LOG_EVERY, cut short: a service
    # that sends errors in a loop, or megabytes of message, cannot flood the log.
    n = core.stats.service_errors
    if n <= ERRORS_LOGGED_IN_FULL or n % MALFORMED_LOG_EVERY == 0:
        level = core.log.debug if event.benign else core.log.warning
        level(
            "realtime.error",
            code=str(event.code)[:64] if event.code else event.code,
            message=event.message[:MAX_LOGGED_MESSAGE],
            count=core.stats.service_errors,
        )
