"""Log lines: JSON, one per line, with the call's ids on the libraries' lines too, and no
library debug output (websockets logs handshake headers, with the api-key, at debug)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import logging
import structlog
from gateway.config import LoggingConfig
from gateway.observability import setup_logging

setup_logging(LoggingConfig(format="json", level="debug"))
structlog.contextvars.bind_contextvars(call_id="c0ffee", sip_call_id="abc@pbx")
structlog.get_logger("gateway").info("call.answered", codec="PCMU")
logging.getLogger("websockets.client").debug("> api-key: SECRET-KEY-VALUE")
logging.getLogger("aiosipua.uas").warning("No ACK for 2xx on %s", "abc@pbx")
structlog.contextvars.clear_contextvars()
logging.getLogger("aiosipua.uas").warning("outside any call")
"""


def test_library_lines_are_json_with_the_call_ids_and_no_debug() -> None:
    # A subprocess: setup_logging() configures the process-wide logging.
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=True
    )
    assert "SECRET-KEY-VALUE" not in run.stdout + run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines()]
    ours, library, outside = lines
    assert ours["event"] == "call.answered"
    assert (ours["call_id"], ours["sip_call_id"]) == ("c0ffee", "abc@pbx")
    assert library["event"] == "No ACK for 2xx on abc@pbx"
    assert (library["call_id"], library["sip_call_id"]) == ("c0ffee", "abc@pbx")
    assert (library["level"], library["logger"]) == ("warning", "aiosipua.uas")
    assert "timestamp" in library
    assert "call_id" not in outside


FLOOD = r"""
import logging
from gateway.config import LoggingConfig
from gateway.observability import setup_logging

setup_logging(LoggingConfig(format="json", level="info"))
short = logging.getLogger("aiosipua.message")
for i in range(500):  # what a flood of truncated INVITEs makes aiosipua say
    short.warning("Body shorter than Content-Length (%d < %d)", i, 9999)
logging.getLogger("aiosipua.uas").warning("another message")
logging.getLogger("gateway.x").warning("not a library")
logging.getLogger("gateway.x").warning("not a library")
"""


def test_a_library_that_logs_per_packet_is_let_through_once_a_minute() -> None:
    run = subprocess.run(
        [sys.executable, "-c", FLOOD], capture_output=True, text=True, timeout=30, check=True
    )
    events = [json.loads(line)["event"] for line in run.stderr.splitlines()]
    assert events == [
        "Body shorter than Content-Length (0 < 9999)",
        "another message",
        "not a library",
        "not a library",
    ]
