"""The console's one-line description of a call's events (common.js), run by Node: a
transfer shows its target, mode and outcome."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

COMMON_JS = Path(__file__).parents[2] / "gateway" / "console" / "static" / "common.js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs node")


def describe(message: dict[str, object]) -> str:
    script = (
        "const document = { addEventListener() {} };\n"
        + COMMON_JS.read_text()
        + f"\nprocess.stdout.write(Console.describe({json.dumps(message)}));\n"
    )
    done = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def test_a_transfer_shows_its_mode_and_outcome() -> None:
    data = {"target": "sip:600@pbx", "mode": "warm", "outcome": "bridged", "ok": True}
    line = describe({"type": "call.transferred", "data": data})
    assert line == "call.transferred to sip:600@pbx (warm: bridged)"


def test_a_transfer_without_mode_or_outcome_shows_its_target() -> None:
    line = describe({"type": "call.transferred", "data": {"target": "sip:600@pbx"}})
    assert line == "call.transferred to sip:600@pbx"
