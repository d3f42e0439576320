"""A warm transfer's edges through real peers: a REFER taken and then failed (NOTIFY 503),
the human hanging up during the briefing or once bridged, the caller hanging up while the
human's phone rings or once bridged. Each leaves the RTP ports and tasks it found."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.agent import EmbeddedRealtimeServer

from .gateway_proc import GatewayProcess
from .rtp_caller import RtpCaller, voice
from .test_session_timers import at
from .test_warm_transfer import config, sent
from .warm_edge_scenarios import (
    answering_target,
    edge_caller_sipp,
    reinviting_target,
    timed_target,
)
from .warm_scenarios import ringing_target

pytestmark = pytest.mark.integration

LONG_SUMMARY = (
    "Anna Lindqvist ordered a washing machine three weeks ago, it arrived damaged, she has "
    "photos of the dent and the receipt, and she would like a replacement delivered this week "
    "rather than a refund; she is available every morning and prefers a call back by phone."
)


def edge_config(fake: EmbeddedRealtimeServer, target: str, tmp_path: Path) -> dict[str, Any]:
    cfg = config(fake, target)
    cfg["metrics"] = {"debug_state": True}
    cfg["records"] = {"calls_dir": str(tmp_path / "records")}
    return cfg


def state(gateway: GatewayProcess, collect: bool = False) -> dict[str, Any]:
    """/debug/state; ``collect``: after a full collection, with what it found unreachable."""
    url = f"{gateway.metrics_url}/debug/state{'?gc=1' if collect else ''}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def settled(gateway: GatewayProcess, before: dict[str, Any], timeout: float = 10) -> None:
    """The RTP ports in use and the tasks back to what they were before the call."""
    deadline = time.monotonic() + timeout
    while True:
        now = await asyncio.to_thread(state, gateway)
        back = now["rtp_ports_in_use"] == before["rtp_ports_in_use"]
        if back and now["tasks"] <= before["tasks"] and now["calls"] == 0:
            return
        assert time.monotonic() < deadline, (before, now)
        await asyncio.sleep(0.1)


def record(tmp_path: Path) -> dict[str, Any]:
    [found] = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    return found


def transfer_call(summary: str = "Anna, refund.") -> EmbeddedRealtimeServer:
    arguments = json.dumps({"destination": "sales", "mode": "warm", "summary": summary})
    return EmbeddedRealtimeServer(function_calls=[("transfer_call", arguments)])


async def edge(
    tmp_path: Path,
    target: Any,
    caller: str,
    *,
    fake: EmbeddedRealtimeServer | None = None,
    session_timers: dict[str, Any] | None = None,
) -> tuple[GatewayProcess, dict[str, Any], dict[str, Any]]:
    """A warm transfer to `target` (a SIPp human) from a SIPp caller playing `caller`
    (edge_caller_sipp), until the call ends; both SIPps' own checks must pass, and the RTP
    ports and tasks are back to what they were, and nothing of the call left for the garbage
    collector. The gateway (its log), the transfer event and call.ended."""
    fake = fake or transfer_call()
    async with fake, RtpCaller() as phone, target:
        cfg = edge_config(fake, target.uri("600"), tmp_path)
        if session_timers is not None:
            cfg["sip"] = {"session_timers": session_timers}
        async with GatewayProcess(tmp_path, cfg) as gw:
            before = await asyncio.to_thread(state, gw)
            sipp = edge_caller_sipp(tmp_path / "caller", gw.port, phone.port, caller)
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 150.0))
                event = await gw.wait_for("call.transfer", timeout=60)
                assert await target.wait(30) == 0, target.report()
                assert await sipp.wait(30) == 0, sipp.report()
                ended = await gw.wait_for("call.ended", timeout=15)
            await settled(gw, before)
            # Both legs freed by reference counting: asyncio's closed transports (which refer
            # to themselves) are all a full collection finds.
            assert (await asyncio.to_thread(state, gw, True))["gc_collected"] < 60
    return gw, event, ended


async def bridged(
    tmp_path: Path, target: Any, session_timers: dict[str, Any] | None = None
) -> GatewayProcess:
    """`edge` with a caller that refuses the REFER (405): bridged, until the human's side
    ends it and the caller gets our BYE (end reason transferred)."""
    gw, event, ended = await edge(
        tmp_path, target, "refused_then_bye", session_timers=session_timers
    )
    assert event["outcome"] == "bridged", event
    assert ended["reason"] == "transferred", ended
    return gw


async def test_refer_failed_by_notify_503_bridges_and_caller_bye_ends_the_human(
    tmp_path: Path,
) -> None:
    """The caller's side takes the REFER (202), then reports the new call failed (NOTIFY
    sipfrag 503): the legs are bridged (outcome bridged, the 503 in the detail); the
    caller's BYE then ends the human's leg (SIPp target gets our BYE)."""
    target = answering_target(tmp_path / "target", None)
    _, event, ended = await edge(tmp_path, target, "notify503")
    assert event["outcome"] == "bridged" and "503" in event["detail"], event
    assert ended["reason"] == "caller_bye", ended
    [entry] = record(tmp_path)["transfers"]
    assert entry["outcome"] == "bridged" and entry["ok"] is True, entry


async def test_human_hangs_up_during_the_briefing(tmp_path: Path) -> None:
    """The human (SIPp) hangs up 0.2 s into the briefing (the embedded agent's lasts
    0.6 s): no REFER; the caller comes off hold (SIPp checks a=sendrecv), the model is told
    in the tool's output, the outcome is recorded, the second leg's port and tasks are let
    go."""
    fake = transfer_call(LONG_SUMMARY)
    target = answering_target(tmp_path / "target", 200)
    gw, event, _ = await edge(tmp_path, target, "resumed", fake=fake)
    refers = gw.find("transfer.step", step="refer")
    assert refers == [], "the human hung up after the briefing, not during it"
    assert event["outcome"] == "failed" and event["ok"] is False, event
    assert "hung up" in event["detail"], event
    outputs = sent(fake, "conversation.item.create")
    [output] = [e for e in outputs if e["item"]["type"] == "function_call_output"]
    error = json.loads(output["item"]["output"])["error"]
    assert "hung up" in error and "off hold" in error, error
    [entry] = record(tmp_path)["transfers"]
    assert entry["outcome"] == "failed", entry


async def test_human_hangs_up_while_the_refer_is_pending(tmp_path: Path) -> None:
    """The caller's side takes the REFER (202) and sends no NOTIFY; the human hangs up
    meanwhile: the caller comes off hold at once (not at the REFER's 30 s timeout)."""
    target = answering_target(tmp_path / "target", 1500)
    gw, event, _ = await edge(tmp_path, target, "refer_pending")
    [bye] = gw.find("transfer.target_bye")
    [resume] = gw.find("transfer.resume")
    waited = datetime.fromisoformat(resume["timestamp"]) - datetime.fromisoformat(bye["timestamp"])
    assert waited.total_seconds() < 2, waited
    assert event["outcome"] == "failed" and "hung up" in event["detail"], event


async def test_human_bye_in_a_bridge_ends_the_caller(tmp_path: Path) -> None:
    """Bridged (the REFER refused 405), the human hangs up: the caller gets our BYE, the
    call ends with reason transferred, the second leg's port is let go."""
    await bridged(tmp_path, answering_target(tmp_path / "target", 12_000))
    [entry] = record(tmp_path)["transfers"]
    assert entry["outcome"] == "bridged", entry


@pytest.mark.parametrize("offer", [True, False], ids=["offer", "offerless"])
async def test_the_humans_reinvite_is_answered_with_our_sdp(tmp_path: Path, offer: bool) -> None:
    """The human's PBX re-INVITEs the second leg (a refresh, a move) once bridged: 200 with our
    SDP, as on the caller's leg (it was 500 forever, so a PBX refreshing by re-INVITE dropped
    the human after the session interval); an offerless one gets our offer and its ACK's
    answer is taken. Then the human's BYE ends the caller."""
    target = reinviting_target(tmp_path / "target", 3_000, 1_000, offer=offer)
    gw = await bridged(tmp_path, target)
    assert [r["offer"] for r in gw.find("sip.reinvite")] == [offer]
    late = gw.find("sip.late_answer")
    assert [a["codec"] for a in late] == ([] if offer else ["PCMU"]), late


async def test_a_human_whose_pbx_stops_refreshing_is_hung_up(tmp_path: Path) -> None:
    """The second leg asks for session timers as outbound calls do; the human's 200 takes the
    refreshes on itself (8 s, refresher=uas) and sends none: by 8 - 8/3 s the gateway ends that
    leg (our BYE, which SIPp waits for) and, bridged, the caller's with it."""
    target = timed_target(tmp_path / "target", "8;refresher=uas")
    gw = await bridged(tmp_path, target, {"expires_s": 8, "min_se_s": 2})
    [armed] = gw.find("sip.session_timer", interval_s=8)
    [expired] = gw.find("transfer.target_session_expired")
    assert armed["refresher"] == "uas"  # the human's side (we are the leg's UAC)
    waited = at(expired) - at(armed)
    print(f"\nthe human's leg, silent refresher, interval 8 s: ended {waited:.3f} s after")
    assert 5.0 <= waited <= 6.0, waited


async def test_a_target_answering_without_a_to_tag_is_bridged_with_the_caller_off_hold(
    tmp_path: Path,
) -> None:
    """The human's 200 carries no To tag, so no REFER with Replaces can name its dialog: the
    legs are bridged instead, the caller taken off hold first (re-INVITE sendrecv, which the
    caller's scenario checks), and its BYE ends both legs."""
    target = answering_target(tmp_path / "target", None, to_tag=False)
    _, event, ended = await edge(tmp_path, target, "resumed")
    assert event["outcome"] == "bridged" and "no REFER" in event["detail"], event
    assert ended["reason"] == "caller_bye", ended


async def test_caller_hangs_up_while_the_target_rings(tmp_path: Path) -> None:
    """The caller hangs up while the human's phone rings: the second leg is CANCELled
    (SIPp answers 200 and 487 and takes our ACK), the outcome is recorded, nothing is
    left running."""
    _, event, ended = await edge(tmp_path, ringing_target(tmp_path / "target"), "hangs_up")
    assert ended["reason"] == "caller_bye", ended
    assert event["outcome"] == "failed" and "caller hung up" in event["detail"], event
    [entry] = record(tmp_path)["transfers"]
    assert entry["outcome"] == "failed", entry


async def test_caller_hangs_up_before_a_blind_transfers_outcome(tmp_path: Path) -> None:
    """A blind REFER taken (202), then the caller's BYE before any NOTIFY: the transfer is
    recorded all the same (failed, the reason in the detail)."""
    arguments = json.dumps({"destination": "sales", "mode": "blind"})
    fake = EmbeddedRealtimeServer(function_calls=[("transfer_call", arguments)])
    async with fake, RtpCaller() as phone:
        async with GatewayProcess(
            tmp_path, edge_config(fake, "sip:600@pbx.example", tmp_path)
        ) as gw:
            sipp = edge_caller_sipp(tmp_path / "caller", gw.port, phone.port, "blind_bye")
            async with sipp:
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(1.0, 150.0))
                assert await sipp.wait(30) == 0, sipp.report()
                ended = await gw.wait_for("call.ended", timeout=15)
                event = await gw.wait_for("call.transfer", timeout=5)
    assert ended["reason"] == "caller_bye", ended
    assert event["mode"] == "blind" and event["outcome"] == "failed", event
    assert "before the REFER's outcome" in event["detail"], event
    [entry] = record(tmp_path)["transfers"]
    assert entry["outcome"] == "failed", entry
