"""The control API's verbs on the calls in progress (:class:`gateway.api.controls.CallControls`
over the gateway's registry): what a call looks like from outside, and what may be done to it
in which state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import Counter

from .api.controls import SayMode
from .api.door import ApiDoor
from .api.problems import Problem
from .api.requests import PlaceCallRequest
from .api.server import ApiServer
from .bridge.ending import Transfer
from .bridge.setup import ActiveCall
from .calls import Calls
from .config import GatewayConfig, api_token
from .console.history import History
from .console.hub import Hub
from .console.server import Console
from .console.tap import CallTap
from .outbound import CallRequest, OutboundRefused
from .sip.blocklist import AuthBlocklist
from .startup import StartupError

log = structlog.get_logger("gateway")

TRANSFER_TIMEOUT_S = 30.0
WARM_EXTRA_S = 100.0  # a warm transfer's hold, briefing (60 s at most) and REFER, beyond the ring


class GatewayControls:
    """Finds calls by the gateway's call id; refuses what the call's state does not allow."""

    def __init__(
        self, calls: Calls, place: Callable[[CallRequest], tuple[str, str]] | None = None
    ) -> None:
        self._calls = calls
        self._place = place

    def place_call(self, request: PlaceCallRequest) -> tuple[str, str]:
        """An outbound call (its id and SIP Call-ID); 403/409/429/503 when it may not be."""
        if self._place is None:
            raise Problem(409, "outbound calls need sip.outbound in the config")
        try:
            return self._place(
                CallRequest(
                    to=request.to,
                    caller_id=request.from_,
                    profile=request.profile,
                    variables=dict(request.variables),
                    metadata=dict(request.metadata),
                    ring_timeout_s=request.ring_timeout_s,
                    amd=request.amd,
                )
            )
        except OutboundRefused as exc:
            extra = {"reason": exc.refused.reason}
            if exc.retry_after is not None:
                extra["retry_after_s"] = exc.retry_after
            raise Problem(exc.refused.status, exc.refused.detail, **extra) from None

    def calls(self) -> list[dict[str, Any]]:
        return [view(call) for call in list(self._calls.values()) if call.setup is not None]

    def call(self, call_id: str) -> dict[str, Any]:
        return view(self._find(call_id))

    def hang_up(self, call_id: str) -> None:
        """Hang up an answered call; an outbound call still ringing is CANCELled."""
        call = self._find(call_id)
        setup = call.setup
        if setup is None or setup.record.direction != "outbound" or call.end_reason is not None:
            call = self._answered(call_id)
        self._calls.end(call.sip.call_id, "api_hangup")

    async def transfer(
        self, call_id: str, target: str, mode: str = "blind", summary: str = ""
    ) -> str:
        """Blind (REFER) or warm (hold, ring, brief, join): answered once the outcome is
        known; a bridged warm transfer goes on after the answer."""
        call = self._answered(call_id)
        actions = call.setup.actions if call.setup is not None else None
        if actions is None:
            raise Problem(409, "the call cannot be transferred now")
        try:
            known = actions.api_transfer(Transfer(target, mode, summary))
        except RuntimeError as exc:
            raise Problem(409, str(exc)) from None
        wait_s = TRANSFER_TIMEOUT_S
        if mode == "warm":
            wait_s += actions.warm_ring_s + WARM_EXTRA_S
        try:
            outcome, detail = await asyncio.wait_for(asyncio.shield(known), wait_s)
        except TimeoutError:
            raise Problem(504, "the transfer's outcome did not come in time") from None
        log.info("call.transfer_api", call_id=call.id, target=target, mode=mode, outcome=outcome)
        if outcome not in ("joined_by_refer", "bridged"):
            raise Problem(502, f"the transfer failed ({outcome}): {detail}")
        return f"{outcome}: {detail}"

    def say(self, call_id: str, text: str, mode: SayMode) -> None:
        call = self._answered(call_id)
        assert call.bridge is not None
        call.bridge.say(text, mode)

    def send_keys(self, call_id: str, digits: str) -> None:
        call = self._answered(call_id)
        assert call.setup is not None and call.setup.keys is not None
        try:
            call.setup.keys.send(digits)
        except ValueError as exc:
            raise Problem(409, str(exc)) from None

    def live(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """Every call's live figures, or one call's, for the console (a few times a second
        while a page is open)."""
        return [
            live(call)
            for call in list(self._calls.values())
            if call.setup is not None and (call_id is None or call.id == call_id)
        ]

    def alive(self, call_id: str) -> bool:
        """Whether the call is still in progress (its listen-in goes on)."""
        return any(call.id == call_id for call in list(self._calls.values()))

    def tap(self, call_id: str) -> tuple[CallTap, Callable[[], None]]:
        """The answered call's console tap (listen-in, meters) and how to put it away."""
        bridge = self._answered(call_id).bridge
        assert bridge is not None
        return bridge.console_tap(), bridge.console_untap

    def _find(self, call_id: str) -> ActiveCall:
        for call in list(self._calls.values()):
            if call.id == call_id and call.setup is not None:
                return call
        raise Problem(404, "no call in progress has this id")

    def _answered(self, call_id: str) -> ActiveCall:
        call = self._find(call_id)
        if call.end_reason is not None:
            raise Problem(409, f"the call is ending ({call.end_reason})")
        if call.bridge is None or call.setup is None or call.setup.answered_at is None:
            raise Problem(409, "the call is not answered yet")
        return call


def view(call: ActiveCall) -> dict[str, Any]:
    """A call in progress as the API shows it (no secret, nothing the caller could not see)."""
    setup = call.setup
    assert setup is not None
    record, answered, transcript = setup.record, setup.answered_at, setup.transcript
    state = "ending" if call.end_reason else "answered" if answered is not None else "setting_up"
    return {
        "id": call.id,
        "sip_call_id": call.sip.call_id,
        "state": state,
        "caller": call.sip.caller,
        "callee": call.sip.callee,
        "dialed": record.dialed,
        "source": f"{call.sip.source_addr[0]}:{call.sip.source_addr[1]}",
        "profile": record.profile,
        "codec": record.codec,
        "direction": record.direction,
        "received_at": record.received_at,
        "answered_at": record.answered_at,
        "duration_s": round(time.monotonic() - answered, 3) if answered is not None else 0.0,
        "last_turns": list(transcript.recent) if transcript is not None else [],
    }


def live(call: ActiveCall) -> dict[str, Any]:
    """A call as the console's list shows it, as it is now: who talks, loss, latency."""
    setup = call.setup
    assert setup is not None
    record, answered, bridge = setup.record, setup.answered_at, setup.bridge
    state = "ending" if call.end_reason else "answered" if answered is not None else "setting_up"
    figures: dict[str, Any] = {
        "id": call.id,
        "state": state,
        "caller": call.sip.caller,
        "dialed": record.dialed,
        "profile": record.profile,
        "duration_s": round(time.monotonic() - answered, 1) if answered is not None else 0.0,
    }
    if bridge is None:
        return figures
    rx = bridge.rtp.receiver
    lost, received = rx.reorder.stats.lost, rx.stats.packets_in
    turns = getattr(bridge.session, "turns", None)
    figures |= {
        "caller_talking": bool(getattr(turns, "talking", False)),
        "agent_talking": bridge.playback.buffered_ms > 0,
        "loss_pct": round(100 * lost / (lost + received), 2) if lost + received else 0.0,
        "uplink_ms": round(bridge.probe.uplink_ms, 1),
        "downlink_ms": round(bridge.probe.downlink_ms, 1),
        "barge_ins": bridge.stats.barge_ins,
    }
    if bridge.tap is not None and bridge.tap.watchers:
        figures["levels"] = bridge.tap.levels()
    return figures


async def start_api(
    cfg: GatewayConfig,
    calls: Calls,
    place: Callable[[CallRequest], tuple[str, str]] | None = None,
    hub: Hub | None = None,
    on_listen: Callable[[], None] = lambda: None,
    blocks: Counter | None = None,
) -> ApiServer | None:
    """The control API listening, when configured, with its console unless turned off;
    StartupError when it cannot."""
    api = cfg.api
    if api is None:
        return None
    token = api_token(cfg)
    if api.token_env is not None and token is None:
        raise StartupError(f"api.token_env: environment variable {api.token_env} is not set")
    controls = GatewayControls(calls, place)
    door = ApiDoor(AuthBlocklist(api.max_failures, api.failure_window_s, api.block_s), blocks)
    console = None
    if api.console:
        records = cfg.records
        history = History(records.calls_dir, records.transcripts_dir, records.recordings_dir)
        console = Console(controls, hub or Hub(), history, token.encode() if token else None, door)
        console.on_listen = on_listen
    server = ApiServer(controls, api.bind, api.port, token, console, door)
    try:
        await server.start()
    except OSError as exc:
        raise StartupError(
            f"api: cannot listen on {api.bind}:{api.port}: {exc.strerror or exc}"
        ) from None
    return server
