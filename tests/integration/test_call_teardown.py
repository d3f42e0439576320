"""A call's teardown: its steps in their order, and every step run when one of them fails.

The gateway in this process (to watch its steps), a caller on loopback UDP sockets that
answers in-dialog requests, the embedded echo agent.
"""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.bridge.recording import Recording
from gateway.bridge.timeline_svg import marks
from gateway.bridge.transcript import TranscriptLog
from gateway.call_record import CallRecord
from gateway.media.stream import PortAllocator, RtpStream
from gateway.realtime.link import RealtimeLink
from gateway.sip.uas import GatewayUAS

from .fuzz_mutators import Addresses, Context, invite
from .gateway_proc import InProcessGateway
from .peers import LOOPBACK
from .test_fuzz_sockets import UdpChannel

pytestmark = pytest.mark.integration


def records_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "agent": {"recording": True},
        "records": {
            name: str(tmp_path / name)
            for name in ("transcripts_dir", "recordings_dir", "calls_dir")
        },
    }


@contextlib.asynccontextmanager
async def answered_call(
    config: dict[str, Any], call_id: str
) -> AsyncIterator[tuple[InProcessGateway, UdpChannel, Any]]:
    """A gateway and a call to it, answered (200 OK, ACKed) and in progress."""
    async with InProcessGateway(config) as gateway:
        media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        media.bind((LOOPBACK, 0))
        channel = UdpChannel(gateway.port, media.getsockname()[1])
        ctx = Context(
            "UDP", LOOPBACK, channel.port, gateway.port, media.getsockname()[1],
            Addresses("127.0.0.3", 5060, 5062),
        )  # fmt: skip
        try:
            channel.send(invite(ctx, call_id).encode())
            ok = await channel.final(call_id, "INVITE", timeout=10)
            assert ok.status == 200, ok.first
            await gateway.wait_for("call.answered", timeout=5)
            yield gateway, channel, ok
        finally:
            channel.close()
            media.close()


def watch(monkeypatch: pytest.MonkeyPatch, steps: list[str], cls: type, name: str) -> None:
    """Note `cls.name` in `steps` each time it runs (it still does what it did)."""
    original: Callable[..., Any] = getattr(cls, name)
    label = f"{cls.__name__}.{name}"

    def noted(self: Any, *args: Any, **kwargs: Any) -> Any:
        steps.append(f"{label}:{self.state}" if cls is CallRecord else label)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, noted)


@pytest.mark.parametrize("ending", ["caller_bye", "shutdown"])
async def test_teardown_runs_in_the_order_of_today(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """Transcript closed, BYE (ours, unless the caller sent one), Realtime session closed,
    recording flushed, RTP socket closed and its port released, then the completed record,
    then ``call.ended``."""
    steps: list[str] = []
    for cls, name in [
        (TranscriptLog, "close"),
        (GatewayUAS, "send_bye"),
        (RealtimeLink, "close"),
        (Recording, "close"),
        (RtpStream, "close"),
        (PortAllocator, "release"),
        (CallRecord, "write"),
    ]:
        watch(monkeypatch, steps, cls, name)
    async with answered_call(records_config(tmp_path), "td-order") as (gateway, channel, ok):
        start = len(steps)
        if ending == "caller_bye":
            channel.send(channel._request("BYE", ok, 2))
            assert (await channel.final("td-order", "BYE")).status == 200
        else:
            await gateway.gateway.stop("shutdown")
        ended = await gateway.wait_for("call.ended", timeout=10)
    assert ended["reason"] == ending
    bye = [] if ending == "caller_bye" else ["GatewayUAS.send_bye"]
    assert steps[start:][: 7 + len(bye)] == [
        "TranscriptLog.close",
        *bye,
        "RealtimeLink.close",
        "Recording.close",
        "RtpStream.close",
        "PortAllocator.release",
        "CallRecord.write:completed",
    ]
    assert steps[:start].count("CallRecord.write:in_progress") == 1


async def test_a_failing_teardown_step_leaves_the_others_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Realtime session's close raises: the recording is still finished, the RTP port
    released, the call leaves the registry and its record is written, completed."""
    close = RealtimeLink.close

    async def failing_close(self: RealtimeLink) -> None:
        await close(self)
        raise RuntimeError("close failed")

    monkeypatch.setattr(RealtimeLink, "close", failing_close)
    async with answered_call(records_config(tmp_path), "td-fail") as (gateway, channel, ok):
        channel.send(channel._request("BYE", ok, 2))
        assert (await channel.final("td-fail", "BYE")).status == 200
        ended = await gateway.wait_for("call.ended", timeout=10)
        assert ended["reason"] == "caller_bye"
        assert gateway.gateway._ports.in_use == 0 and not gateway.gateway.calls
        await gateway.wait_for("call.teardown_failed", timeout=5)
    [record_file] = (tmp_path / "calls_dir").glob("*.json")
    record = json.loads(record_file.read_text())
    assert (record["state"], record["end_reason"]) == ("completed", "caller_bye")
    assert record["rtp"]["packets_out"] > 0
    timeline = marks((tmp_path / "calls_dir" / f"{record['call_id']}.timeline.svg").read_text())
    assert timeline["call_id"] == record["call_id"]  # and its timeline beside it
    [wav] = (tmp_path / "recordings_dir").glob("*.wav")
    assert record["recording"] == str(wav) and wav.stat().st_size > 44  # header and audio


async def test_an_ended_call_is_freed_by_reference_counting(tmp_path: Path) -> None:
    """Nothing of a call waits for the garbage collector: a full collection under load scans
    whatever cyclic garbage the ended calls left (their bridges, sessions, streams: ~270
    objects a call), a pause on every other call's media clock (167 ms for 300 calls'). With
    the collector off, every part of the call is gone once it has ended."""
    gc.disable()
    try:
        async with answered_call(records_config(tmp_path), "td-freed") as (gateway, channel, ok):
            call = gateway.gateway.calls["td-freed"]
            bridge, setup = call.bridge, call.setup
            assert bridge is not None and setup is not None
            parts = {
                "call": call,
                "setup": setup,
                "bridge": bridge,
                "link": bridge.session,
                "stream": bridge.rtp,
                "actions": bridge.actions,
                "uplink": bridge.uplink,
                "core": bridge.core,
            }
            refs = {name: weakref.ref(part) for name, part in parts.items()}
            del call, bridge, setup, parts
            channel.send(channel._request("BYE", ok, 2))
            assert (await channel.final("td-freed", "BYE")).status == 200
            await gateway.wait_for("call.ended", timeout=10)
        alive = [name for name, ref in refs.items() if ref() is not None]
        assert alive == []
    finally:
        gc.enable()
