"""What SIPVicious, the scanner most SIP ports on the internet meet first, learns of the gateway.

`svmap` sends an OPTIONS to each address and port it is given and lists whatever answers, with
its User-Agent; `svwar` enumerates extensions: it sends a request for a number no one has (a
random 32-bit one), takes the answer as the "no such user" fingerprint, and reports every
extension whose answer differs from it.

"Finds nothing the config does not expose" means here:

- from outside ``sip.allow_from`` with ``reject_unknown: drop``, svmap finds no device at all;
  with ``respond`` it finds a device (a 403 is an answer) but learns no product version;
- from inside ``sip.allow_from`` svmap finds the gateway: the PBX is meant to reach it;
- svwar cannot tell numbers apart. The gateway is a trunk endpoint: it answers every dialed
  number (routes only choose which agent profile talks), so there are no extensions to find,
  and a number that has a route must get the same answer as one that has none; otherwise a
  scanner would learn the route table.

The scanners send to 127.0.0.1 only, from 127.0.0.1 or 127.0.0.2 (their -b option), on a port
of their own (-P) and with -x set (else they look up the host's name to learn their address),
and every run is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from .gateway_proc import InProcessGateway
from .peers import LOOPBACK, free_udp_port

STRANGER = "127.0.0.2"
_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.defpath])
SVMAP = shutil.which("sipvicious_svmap", path=_PATH)
SVWAR = shutil.which("sipvicious_svwar", path=_PATH)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        SVMAP is None or SVWAR is None, reason="sipvicious not installed (pip install sipvicious)"
    ),
]

# svmap's result table: "| 127.0.0.1:5060 | sip-realtime-gateway |".
_ROW = re.compile(r"^\|\s*(\d+\.\d+\.\d+\.\d+:\d+)\s*\|\s*(.*?)\s*\|$", re.M)


async def _run(tool: str | None, *args: str, timeout: float = 30) -> tuple[int, str]:
    """A scanner's exit code and output (stdout and log lines together)."""
    assert tool is not None
    proc = await asyncio.create_subprocess_exec(
        tool,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{Path(tool).name} still running after {timeout} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def svmap(port: int, source: str) -> dict[str, str]:
    """svmap against 127.0.0.1:`port` from `source`: the devices it found -> User-Agent."""
    _, out = await _run(
        SVMAP, "-p", str(port), "-b", source, "-x", source,
        "-P", str(free_udp_port(source)), LOOPBACK,
    )  # fmt: skip
    found = {addr: agent for addr, agent in _ROW.findall(out) if addr != "SIP Device"}
    if not found:
        assert "found nothing" in out, out  # it ran to its end, it did not fail
    return found


async def svwar(port: int, method: str, extensions: str) -> str:
    """svwar's output for an enumeration of `extensions` with `method` from 127.0.0.1."""
    code, out = await _run(
        SVWAR, "-p", str(port), "-b", LOOPBACK, "-x", LOOPBACK,
        "-P", str(free_udp_port()), "-m", method, "-e", extensions,
        "--maximumtime", "5", "-v", LOOPBACK,
    )  # fmt: skip
    assert "Total time" in out, f"svwar did not finish (exit {code}):\n{out}"
    return out


def _dropped(gateway: InProcessGateway, reason: str) -> float:
    return float(gateway.gateway.metrics.sip_dropped.labels("udp", reason)._value.get())


async def test_svmap_finds_nothing_from_outside_allow_from_in_drop_mode() -> None:
    config = {"sip": {"allow_from": ["127.0.0.1/32"], "reject_unknown": "drop"}}
    async with InProcessGateway(config) as gateway:
        assert await svmap(gateway.port, STRANGER) == {}
        assert _dropped(gateway, "not_allowed") >= 1  # its probe did arrive
        # From the PBX's address the gateway is there: that is what allow_from exposes.
        assert await svmap(gateway.port, LOOPBACK) == {
            f"{LOOPBACK}:{gateway.port}": "sip-realtime-gateway"
        }


async def test_svmap_from_outside_sees_a_403_and_no_version_in_respond_mode() -> None:
    config = {"sip": {"allow_from": ["127.0.0.1/32"], "reject_unknown": "respond"}}
    async with InProcessGateway(config) as gateway:
        found = await svmap(gateway.port, STRANGER)
        assert list(found) == [f"{LOOPBACK}:{gateway.port}"]
        (agent,) = found.values()
        assert agent == "sip-realtime-gateway"
        assert not re.search(r"\d", agent), "a version number tells which exploits to try"
        assert _dropped(gateway, "not_allowed") >= 1
        assert not gateway.gateway.calls and not gateway.uas._calls


async def test_svwar_cannot_tell_numbers_apart() -> None:
    """Numbers 990-1010, 1000 of them with a route of its own: REGISTER gets 405 for every
    one (svwar stops), OPTIONS and INVITE 200 for every one, so svwar finds nothing. Its
    INVITEs are real calls (answered, then ended by its BYE), and the route did pick its
    profile for 1000: the difference exists inside and does not show outside."""
    config = {
        "profiles": {"sales": {"instructions": "You sell."}},
        "routes": [{"match": {"dialed": "^1000$"}, "profile": "sales"}],
    }
    async with InProcessGateway(config) as gateway:
        for method in ("REGISTER", "OPTIONS", "INVITE"):
            out = await svwar(gateway.port, method, "990-1010")
            assert "found nothing" in out, f"svwar {method} told numbers apart:\n{out}"
            assert "exists" not in out, out
        answered = gateway.find("call.answered")
        assert len(answered) >= 21  # 990-1010, and svwar's own random first number
        assert gateway.find("call.routed", profile="sales")
        await gateway.wait_count("call.ended", len(gateway.find("call.received")), timeout=10)
        assert not gateway.find("sip.handler_failed") and not gateway.find("call.failed")
