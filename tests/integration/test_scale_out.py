"""Scale-out under failure: two gateways behind Kamailio (deploy/kamailio/kamailio.cfg), one
killed (SIGKILL) while both carry calls with media. Its own calls end; every new call goes to
the survivor; nothing else fails."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from gateway.media.g711 import PCMU

from .gateway_proc import GatewayProcess
from .kamailio_proc import BINARY, Kamailio
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .scenarios import in_dialog, invite, pause, recv, run_sipp, scenario, sdp, sipp_trace

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("sipp") is None or BINARY is None,
        reason="sipp or kamailio not installed",
    ),
]

LOAD_CALLS = 12
NEW_CALLS = 12


def call_with_media(path: Path, audio: Path, call_ms: int) -> Path:
    """A call that streams G.711 for `call_ms`, then hangs up: 200 if its gateway is alive;
    481 (the survivor does not know the dialog) or 408 (the dead one never answers) if not."""
    return scenario(
        path,
        invite(sdp()),
        recv(100, optional=True),
        recv(200),
        in_dialog("ACK", 1),
        f'  <nop><action><exec rtp_stream="{audio},-1,0"/></action></nop>',
        pause(call_ms),
        in_dialog("BYE", 2),
        '  <recv response="200" optional="true" next="end"/>',
        '  <recv response="481" optional="true" next="end"/>',
        '  <recv response="408"/>',
        '  <label id="end"/>',
    )


def short_call(path: Path) -> Path:
    return scenario(
        path,
        invite(sdp()),
        recv(100, optional=True),
        recv(200, timeout_ms=15000),
        in_dialog("ACK", 1),
        pause(300),
        in_dialog("BYE", 2),
        recv(200),
    )


@pytest.mark.xfail(
    strict=False,
    reason="issue 9, open: in the full suite SIPp's trace shows 3 more 200 OK transactions "
    "than the INVITEs plus the survivor's BYEs (passes when run alone); not yet explained",
)
async def test_a_gateway_killed_under_load(tmp_path: Path) -> None:
    for name in ("gw1", "gw2", "load", "new"):
        (tmp_path / name).mkdir()
    t = np.arange(2 * 8000) / 8000
    audio = tmp_path / "caller.ulaw"
    audio.write_bytes(PCMU.encode((3000 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)))
    async with (
        GatewayProcess(tmp_path / "gw1") as gw1,
        GatewayProcess(tmp_path / "gw2") as gw2,
        Kamailio(tmp_path / "kamailio", [gw1.port, gw2.port]) as kamailio,
    ):

        def context() -> str:
            return f"{kamailio.tail()}\n--- gw1\n{gw1.tail(15)}\n--- gw2\n{gw2.tail(15)}"

        load = Sipp(
            tmp_path / "load",
            [
                "-sf", call_with_media(tmp_path / "load.xml", audio, 6000),
                "-m", LOAD_CALLS, "-l", LOAD_CALLS, "-r", 20, "-i", LOOPBACK,
                "-p", free_udp_port(), "-mp", free_port_block(4),
                "-timeout", 40, "-timeout_error", f"{LOOPBACK}:{kamailio.port}",
            ],
            name="load",
        )  # fmt: skip
        await load.start()
        await gw1.wait_for(
            "call.answered",
            timeout=20,
            where=lambda e: (
                len(gw1.find("call.answered")) + len(gw2.find("call.answered")) >= LOAD_CALLS
            ),
        )
        on_gw1, on_gw2 = len(gw1.find("call.answered")), len(gw2.find("call.answered"))
        assert on_gw1 + on_gw2 == LOAD_CALLS and min(on_gw1, on_gw2) > 0, (on_gw1, on_gw2)
        gw2.send_signal(signal.SIGKILL)
        assert await gw2.wait_exit(timeout=10) == -signal.SIGKILL

        # New calls while the load calls go on: every one is answered, by the survivor.
        await run_sipp(
            tmp_path / "new", short_call(tmp_path / "new.xml"), kamailio.port,
            calls=NEW_CALLS, timeout=60, context=context,
        )  # fmt: skip
        assert len(gw1.find("call.answered")) == on_gw1 + NEW_CALLS

        # The load calls end: those on the survivor normally, those on the dead one not.
        assert await load.wait(timeout=40) == 0, f"{load.report()}\n{context()}"
        expected = on_gw1 + NEW_CALLS  # their end lines come once each call's task finished
        await gw1.wait_for(
            "call.ended", timeout=10, where=lambda e: len(gw1.find("call.ended")) >= expected
        )
        ended = gw1.find("call.ended")
        assert len(ended) == expected
        assert all(e["reason"] == "caller_bye" for e in ended), ended
        received = [m for m in sipp_trace(load.messages_path) if not m.sent]
        # Count transactions, not messages: a 200 may be retransmitted under load.
        ok = len({m.transaction for m in received if m.start.startswith("SIP/2.0 200")})
        failed = ("SIP/2.0 481", "SIP/2.0 408")
        lost = len({m.transaction for m in received if m.start.startswith(failed)})
        assert ok == LOAD_CALLS + on_gw1  # every INVITE, and the BYEs of the survivor's calls
        assert lost == on_gw2  # the BYEs of the dead gateway's calls
        assert not gw2.find("call.ended")  # it had no time to say anything: it was killed
        stats = gw1.find("rtp.stats")
        load_ids = {e["call_id"] for e in gw1.find("call.answered")[:on_gw1]}
        assert all(s["packets_in"] > 100 for s in stats if s["call_id"] in load_ids)
