"""The built-in test caller (`python -m gateway dial`) against a real gateway."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.audio import active_bounds, normalized_xcorr, read_wav, speech_wav

from .gateway_proc import REPO, GatewayProcess
from .peers import missing_peer_tools

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_peer_tools("espeak-ng", "sox")), reason="needs espeak-ng and sox"
    ),
]


async def run_dial(*args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "dial", *args, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode is not None
    report = json.loads(out) if out.strip() else {}
    return proc.returncode, report, err.decode(errors="replace")


async def test_dial_plays_a_wav_and_records_the_echo(tmp_path: Path) -> None:
    speech = speech_wav(
        tmp_path / "speech.wav", "Testing the route to the echo line", 8000, 0.3, 0.5
    )
    start, end = active_bounds(speech, 8000)
    async with GatewayProcess(tmp_path) as gateway:
        code, report, err = await run_dial(
            gateway.uri("echo"), "--wav", str(tmp_path / "speech.wav"),
            "--record", str(tmp_path / "heard.wav"), "--listen", "5",
        )  # fmt: skip
    assert code == 0, err
    assert report["answered"] and report["codec"] == "PCMU"
    assert report["ended_by"].startswith("us")
    # The echo comes after the caller's turn ends: speech, then the VAD's silence window.
    assert report["time_to_first_audio_ms"] > (end / 8000) * 1000
    assert report["packets_received"] > 0.9 * report["duration_s"] * 50
    _, heard = read_wav(tmp_path / "heard.wav")
    peak, _ = normalized_xcorr(speech[start:end], heard)
    print(
        f"\ndial echo correlation {peak:.3f}, first audio {report['time_to_first_audio_ms']:.0f} ms"
    )
    assert peak >= 0.8


async def test_dial_says_text_with_espeak(tmp_path: Path) -> None:
    async with GatewayProcess(tmp_path) as gateway:
        code, report, err = await run_dial(
            gateway.uri("echo"), "--say", "one two three", "--listen", "4", "--codec", "PCMA"
        )
    assert code == 0, err
    assert report["codec"] == "PCMA"
    assert report["time_to_first_audio_ms"] is not None


async def test_dial_reports_a_rejected_call(tmp_path: Path) -> None:
    config = {
        "sip": {"allow_from": ["10.0.0.0/8"]},
        "records": {"calls_dir": str(tmp_path / "calls")},
    }
    async with GatewayProcess(tmp_path, config) as gateway:
        code, report, _ = await run_dial(gateway.uri("echo"), "--say", "hello")
    assert code == 1
    assert report["answered"] is False
    assert report["status"] == 403
    # A source outside sip.allow_from costs no file (a flood of them would fill the disk).
    assert not list((tmp_path / "calls").glob("*.json"))


async def test_dial_reports_a_call_refused_after_the_door_with_its_record(tmp_path: Path) -> None:
    config = {
        "media": {"codecs": ["PCMU"]},
        "records": {"calls_dir": str(tmp_path / "calls")},
    }
    async with GatewayProcess(tmp_path, config) as gateway:
        code, report, _ = await run_dial(gateway.uri("echo"), "--say", "hello", "--codec", "PCMA")
    assert code == 1
    assert report["answered"] is False
    assert report["status"] == 488
    # A call refused once admitted leaves its record.
    [path] = (tmp_path / "calls").glob("*.json")
    record = json.loads(path.read_text())
    assert (record["end_reason"], record["sip_status"], record["dialed"]) == (
        "not_acceptable",
        488,
        "echo",
    )
