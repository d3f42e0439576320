"""One call's transfers, blind and warm: the asyncio shell of warm_transfer.WarmTransfer.

Blind: a REFER with the context headers. Warm: the caller's side gets a re-INVITE sendonly
(the refresh machinery of sip/refresh.py sends, resends and ACKs it) and the music on hold
takes the place of the model's audio; the second leg (target_leg.py) rings the human; once
they answer the model is "moved" to that leg (its audio goes there, the human's comes to
it) and speaks the briefing; then a REFER with Replaces joins the caller to the human, or,
when the caller's side will not, the gateway relays the two legs' audio (decoded and
re-encoded, so two codecs would do) with the model out of the path, until either hangs up.
When the human does not take the call, the caller comes off hold (re-INVITE sendrecv) and
the model gets its audio back, and the reason.

``run`` reports the outcome (``report``) as soon as it is known, and returns the tool's
result when the transfer is over: at once, or for a bridge when one side hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..config import TransferConfig
from ..media.hold_music import HoldMusic, HoldMusicError, hold_samples
from ..sip.transfer_context import context_headers, replaces_refer_to
from .ending import Transfer
from .target_leg import LegFailed, TargetLeg
from .warm_transfer import (
    FAILED,
    JOINED_BY_REFER,
    Bridge,
    Brief,
    Command,
    Dial,
    EndTarget,
    Finish,
    Hold,
    Refer,
    Resume,
    Tell,
    WarmTransfer,
)

Report = Callable[[str, str], None]  # outcome word, detail
REFER_TIMEOUT_S = 30.0
BRIEFING_TIMEOUT_S = 60.0
BRIEFING_POLL_S = 0.04  # how often the briefing's end is looked for (two frames)
RELAY_FRAMES = 10  # 200 ms of one leg's audio may wait for the other's pacer, then dropped
RELAY_PREFILL = 3  # 60 ms in hand before a leg's audio plays to the other

BRIEF_SPOKEN = "Hello, this is the virtual assistant with a caller for you. {summary}"
BRIEF_ASKED = (
    "You are now speaking to the person at {destination} who will take over this call; the "
    "caller is on hold and cannot hear you. Brief them in two or three sentences: who is "
    "calling and what they need. Say nothing else."
)


def call_variables(info: Any, route: Any) -> dict[str, str]:
    """The ${...} values of the context headers: the call's (caller, dialed, X- headers) and
    the decision webhook's variables."""
    return {**info.variables(), **route.variables}


class Relay:
    """One direction of a bridged transfer: the frames one leg heard, for the other's pacer.
    The two clocks are not one: RELAY_PREFILL frames are kept in hand before playing (again
    after running dry), so a packet a little late does not cut silence into the speech."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec
        self.frames: deque[np.ndarray] = deque(maxlen=RELAY_FRAMES)
        self._playing = False

    def heard(self, payload: bytes) -> None:
        self.frames.append(self.codec.decode(payload))

    def next_frame(self) -> np.ndarray | None:
        if not self._playing and len(self.frames) < RELAY_PREFILL:
            return None
        self._playing = bool(self.frames)
        return self.frames.popleft() if self.frames else None


class CallTransfers:
    """The transfers of one answered call (the setup builds it once the bridge exists)."""

    def __init__(
        self,
        call: Any,
        services: Any,
        config: TransferConfig,
        variables: Mapping[str, str],
        log: Any,
    ) -> None:
        self.call = call
        self.services = services
        self.config = config
        self.variables = dict(variables)
        self.log = log

    def headers(self, summary: str) -> dict[str, str]:
        return context_headers(self.config.headers, {**self.variables, "summary": summary})

    async def run(self, command: Transfer, told: Report) -> tuple[bool, str]:
        """The transfer; its outcome reported (and marked on the call's timeline) once known,
        the tool's result returned once it is over."""

        def report(outcome: str, detail: str) -> None:
            timeline = getattr(self.call.bridge, "timeline", None)
            if timeline is not None:
                timeline.transfer(command.mode, outcome)
            told(outcome, detail)

        if command.mode != "warm":
            headers = self.headers(command.summary)
            try:
                ok, detail = await self.call.uas.transfer(
                    self.call.sip, command.target, REFER_TIMEOUT_S, headers=headers
                )
            except asyncio.CancelledError:  # the call ended first: recorded all the same
                report(FAILED, "the call ended before the REFER's outcome")
                raise
            report(JOINED_BY_REFER if ok else FAILED, detail)
            return ok, detail
        return await WarmRun(self, command, report).run()


class WarmRun:
    """One warm transfer, run: the state machine's commands carried out in order."""

    def __init__(self, owner: CallTransfers, command: Transfer, report: Report) -> None:
        self.owner, self.command, self.report = owner, command, report
        self.call = owner.call
        self.log = owner.log
        bridge = self.call.bridge
        assert bridge is not None and self.call.leg is not None
        self.bridge = bridge
        self.caller = bridge.rtp
        self.machine = WarmTransfer(
            command.destination or command.target, command.target, command.summary
        )
        self.leg = TargetLeg(self.call, owner.services, self.call.leg.sdp.plan.codec.name, self.log)
        self.target_gone = asyncio.Event()
        self.leg.on_bye = self.target_gone.set
        self.told = ""
        self.held = False  # the caller's side is on hold (our last re-INVITE was sendonly)

    async def run(self) -> tuple[bool, str]:
        pending: deque[Command] = deque(self.machine.start())
        try:
            while pending:
                command = pending.popleft()
                self.log.info("transfer.step", step=type(command).__name__.lower())
                pending.extend(await self._do(command))
            finish = self.machine.outcome
            assert finish is not None
            if finish.outcome == "bridged":
                await self.target_gone.wait()  # the caller's BYE ends the call task instead
                return True, finish.detail
            return finish.ok, self.told or finish.detail
        except asyncio.CancelledError:  # the call ended (the caller hung up) under way
            self._caller_gone()
            raise
        except Exception:  # a step failed unforeseen: the caller comes back to the model
            if self.held:
                with contextlib.suppress(Exception):
                    await self._hold(False)
            raise
        finally:
            self.leg.hang_up()

    def _caller_gone(self) -> None:
        """The transfer's outcome when the call ends under it (the leg ends in run's
        finally: CANCEL while it rings, BYE once answered); none once bridged."""
        for command in self.machine.caller_hung_up():
            if isinstance(command, Finish):
                self.report(command.outcome, command.detail)

    async def _do(self, command: Command) -> list[Command]:
        match command:
            case Hold():
                return self.machine.held(await self._hold(True))
            case Dial():
                return await self._dial()
            case Brief():
                return await self._brief()
            case Refer():
                return await self._refer()
            case Bridge():
                await self._bridge()
            case Resume():
                return self.machine.resumed(await self._hold(False))
            case EndTarget():
                self.leg.hang_up()
            case Tell():
                self.told = command.text
            case Finish():
                self.report(command.outcome, command.detail)
        return []

    async def _hold(self, held: bool) -> int | None:
        """The caller's side on hold (music, the model deaf to it) or back with the model."""
        bridge = self.bridge
        if held:
            rate = bridge.uplink.codec.rate
            try:
                samples = hold_samples(self.owner.config.music_on_hold, rate)
            except HoldMusicError as exc:
                self.log.warning("transfer.music_on_hold_unusable", error=str(exc))
                samples = hold_samples(None, rate)
            self.caller.switch_source(HoldMusic(samples, self.caller.frame_samples))
            self.caller.on_payload = _drop
        else:
            self.caller.switch_source(bridge)
            self.caller.on_payload = bridge.on_payload
        return await self._direction(held)

    async def _direction(self, held: bool) -> int | None:
        """Our re-INVITE to the caller's side: sendonly (held) or sendrecv (back)."""
        call = self.call
        self.held = held
        sdp = call.leg.sdp.direction_offer("sendonly" if held else "sendrecv")
        status = await call.uas.refreshes.reinvite(call.sip, sdp)
        self.log.info("transfer.hold" if held else "transfer.resume", status=status)
        return status

    async def _dial(self) -> list[Command]:
        headers = self.owner.headers(self.command.summary)
        try:
            answer = await self.leg.ring(
                self.command.target, headers, self.owner.config.ring_timeout_s
            )
        except LegFailed as exc:
            return self.machine.target_answered(503, str(exc), local=True)
        cancelled = self.leg.client is not None and self.leg.client.cancelled
        self.log.info("transfer.target_answer", status=answer.status, reason=answer.reason)
        return self.machine.target_answered(
            answer.status, answer.reason, local=answer.local, cancelled=cancelled
        )

    async def _brief(self) -> list[Command]:
        """The model moves to the human's leg and briefs them; done once its words are out.
        One way: the human's "hello?" would cut the briefing short (a barge-in), so the
        model does not hear them; they talk once joined with the caller."""
        bridge, stream = self.bridge, self.leg.stream
        assert stream is not None
        self.leg.play(bridge)
        summary = self.command.summary
        if summary:
            bridge.say(BRIEF_SPOKEN.format(summary=summary), "speak")
        else:
            bridge.say(BRIEF_ASKED.format(destination=self.machine.destination), "instruct")
        if not await self._briefing_done():
            return self.machine.target_hung_up()
        self.leg.play(Silence())  # the model says nothing more to either leg
        return self.machine.briefed()

    async def _briefing_done(self) -> bool:
        """Whether the briefing was heard in full (False: the human hung up first). Looked
        for every two frames: the core says when its response ends, not when it is heard."""
        core, started = self.bridge.core, False
        deadline = time.monotonic() + BRIEFING_TIMEOUT_S
        while time.monotonic() < deadline and not self.target_gone.is_set():
            busy = core.responding or self.bridge.playback.buffered_ms > 0
            started = started or busy
            if started and not busy:
                return True
            await asyncio.sleep(BRIEFING_POLL_S)
        return not self.target_gone.is_set()

    async def _refer(self) -> list[Command]:
        sip = self.leg.sip
        if self.target_gone.is_set() or sip is None:
            return self.machine.target_hung_up()
        try:
            refer_to = replaces_refer_to(
                sip.dialog.remote_target,
                sip.call_id,
                sip.dialog.remote_tag or "",
                sip.dialog.local_tag,
            )
        except ValueError as exc:  # the target's dialog cannot be named (no To tag, odd Contact)
            self.log.warning("transfer.refer", ok=False, detail=str(exc))
            return self.machine.referred(False, f"no REFER: {exc}")
        refer = asyncio.ensure_future(
            self.call.uas.transfer(
                self.call.sip,
                self.command.target,
                REFER_TIMEOUT_S,
                refer_to=refer_to,
                headers=self.owner.headers(self.command.summary),
            )
        )
        gone = asyncio.ensure_future(self.target_gone.wait())
        try:  # the human hanging up meanwhile needs no REFER outcome: the caller comes back
            await asyncio.wait((refer, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not refer.done():
                refer.cancel()
        if not refer.done() or refer.cancelled():
            self.log.info("transfer.refer", ok=False, detail="the target hung up first")
            return self.machine.target_hung_up()
        ok, detail = refer.result()
        self.log.info("transfer.refer", ok=ok, detail=detail)
        if not ok and self.target_gone.is_set():
            return self.machine.target_hung_up()
        return self.machine.referred(ok, detail)

    async def _bridge(self) -> None:
        """The legs' audio relayed through the gateway; the model hears and says nothing.
        The caller's side comes off hold first (sendrecv): on hold it sends nothing, and the
        human would hear silence."""
        await self._direction(False)
        stream = self.leg.stream
        if stream is None:  # the human's leg ended while the caller came back
            return
        to_target, to_caller = Relay(self.caller.codec), Relay(stream.codec)
        self.caller.on_payload = to_target.heard
        stream.on_payload = to_caller.heard
        self.caller.switch_source(to_caller)
        self.leg.play(to_target)
        self.log.info("transfer.bridged", codec=getattr(stream.codec, "name", ""))


class Silence:
    """A pacer source with nothing to say (the human waits for the REFER's outcome)."""

    def next_frame(self) -> None:
        return None


def _drop(payload: bytes) -> None:
    """Audio nobody should hear (a held caller, a briefed human once done)."""
