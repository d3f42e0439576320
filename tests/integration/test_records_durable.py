"""Nothing a call has written is lost when the gateway is killed, drained or out of disk.

Real gateway process, SIPp for the signalling, a Python phone on a loopback socket, the fake
Realtime service (the echo agent) in this process; the full disk is a small tmpfs.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
import wave
from pathlib import Path
from typing import Any

import pytest

from gateway.agent import EmbeddedRealtimeServer
from tests.tmpfs import fill, small_tmpfs

from .gateway_proc import GatewayProcess
from .peers import missing_peer_tools
from .rtp_caller import RtpCaller, voice
from .scenarios import sipp_dial

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_peer_tools("sipp")), reason="needs sipp"),
]

KINDS = ("call_record", "recording", "transcript")


def config(fake: EmbeddedRealtimeServer, root: Path) -> dict[str, Any]:
    return {
        "realtime": {"url": fake.url, "auth": {"method": "none"}},
        "agent": {"recording": True},
        "records": {
            "calls_dir": str(root / "calls"),
            "recordings_dir": str(root / "rec"),
            "transcripts_dir": str(root / "transcripts"),
        },
    }


def failures(gateway: GatewayProcess) -> dict[str, float]:
    """sipgw_record_write_failures_total by kind, from /metrics."""
    with urllib.request.urlopen(f"{gateway.metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("sipgw_record_write_failures_total{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('kind="', 1)[1].split('"', 1)[0]] = float(value)
    return found


async def test_a_killed_gateway_leaves_a_playable_recording_and_an_open_record(
    tmp_path: Path,
) -> None:
    """SIGKILL in the middle of a call: the WAV's header describes the audio written up to
    then (at most the last 2 s are lost), the call record is there with state in_progress,
    and the transcript holds whole lines."""
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        async with GatewayProcess(tmp_path, config(fake, tmp_path)) as gateway:
            async with sipp_dial(tmp_path / "sipp", gateway.port, phone.port, timeout_ms=30_000):
                answered = await gateway.wait_for("call.answered", timeout=15)
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                phone.say(voice(3.0, 150.0))
                await phone.wait_until(lambda: len(phone.heard) >= 225, 20, "4.5 s of the call")
                gateway.send_signal(signal.SIGKILL)
                elapsed = time.monotonic() - phone.heard[0].at
                assert await gateway.wait_exit(timeout=10) == -signal.SIGKILL

    [path] = (tmp_path / "rec").glob("*.wav")
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        duration = wav.getnframes() / 8000
        assert len(wav.readframes(wav.getnframes())) == wav.getnframes() * 4
    print(f"\nkilled {elapsed:.2f} s into the call: the WAV holds {duration:.2f} s")
    assert elapsed - 2.0 <= duration <= elapsed + 0.1

    record = json.loads((tmp_path / "calls" / f"{answered['call_id']}.json").read_text())
    assert record["state"] == "in_progress"
    assert record["answered_at"] and record["ended_at"] is None
    assert record["recording"] == str(path)
    assert not list((tmp_path / "calls").glob("*.tmp"))

    [transcript] = (tmp_path / "transcripts").glob("*.jsonl")
    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert lines[0]["event"] == "answered" and lines[0]["call_id"] == answered["call_id"]


async def test_a_call_ended_by_the_drain_has_its_record_written_before_exit(
    tmp_path: Path,
) -> None:
    """SIGTERM with a call up and a short drain: the call is hung up, and by the time the
    process has exited its record is complete (state completed, end reason drain_timeout)."""
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        cfg = config(fake, tmp_path) | {"service": {"drain_timeout_s": 0.5}}
        gateway = GatewayProcess(tmp_path, cfg)
        async with gateway:
            async with sipp_dial(
                tmp_path / "sipp", gateway.port, phone.port, timeout_ms=30_000
            ) as sipp:
                answered = await gateway.wait_for("call.answered", timeout=15)
                await phone.wait_until(lambda: len(phone.heard) >= 50, 15, "a second of the call")
                gateway.send_signal(signal.SIGTERM)
                assert await gateway.wait_exit(timeout=20) == 0
                assert await sipp.wait(15) == 0, sipp.report()  # it got the gateway's BYE

    record = json.loads((tmp_path / "calls" / f"{answered['call_id']}.json").read_text())
    assert record["state"] == "completed"
    assert record["end_reason"] == "drain_timeout"
    assert record["ended_at"] and record["duration_s"] >= 1.0
    with wave.open(record["recording"], "rb") as wav:
        assert abs(wav.getnframes() / 8000 - record["duration_s"]) < 0.5
    [transcript] = (tmp_path / "transcripts").glob("*.jsonl")
    last = json.loads(transcript.read_text().splitlines()[-1])
    assert last["event"] == "ended" and last["reason"] == "drain_timeout"


async def test_a_full_disk_costs_the_records_not_the_calls(tmp_path: Path) -> None:
    """Records, recordings and transcripts on a full file system: each failure is one log
    line and a metric, no temporary file is left, and the calls go on (the next one too)."""
    with small_tmpfs(tmp_path / "disk") as disk:
        for name in ("calls", "rec", "transcripts"):
            (disk / name).mkdir()
        fill(disk)
        (tmp_path / "gw").mkdir()
        async with EmbeddedRealtimeServer() as fake:
            async with GatewayProcess(tmp_path / "gw", config(fake, disk)) as gateway:
                for n in (1, 2):
                    async with RtpCaller() as phone:
                        sipp = sipp_dial(
                            tmp_path / f"sipp{n}", gateway.port, phone.port, hang_up_after_ms=2500
                        )
                        async with sipp:
                            await phone.wait_until(lambda: bool(phone.heard), 15, "the answer")
                            phone.say(voice(1.0, 150.0))
                            assert await sipp.wait(20) == 0, sipp.report()
                    await gateway.wait_count("call.ended", n, timeout=15)
                counted = failures(gateway)
            assert gateway.returncode == 0

        left = sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file())
        assert left == ["filler"]  # no .tmp, no half record, no empty WAV

    assert [e["reason"] for e in gateway.find("call.ended")] == ["caller_bye", "caller_bye"]
    assert not gateway.find("call.failed")
    record_failed = gateway.find("call.record_failed")
    assert len(record_failed) == 4  # in_progress and completed, for each call
    assert {e["errno"] for e in record_failed} == {"ENOSPC"}
    assert len(gateway.find("recording.failed")) == 2
    assert len(gateway.find("call.transcript_unavailable")) == 2
    timeline_failed = gateway.find("call.timeline_failed")  # one per call, at its end
    assert [e["errno"] for e in timeline_failed] == ["ENOSPC", "ENOSPC"]
    assert counted == {"call_record": 4, "recording": 2, "transcript": 2, "timeline": 2}
