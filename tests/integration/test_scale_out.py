"""Scale-out under failure: two gateways behind Kamailio (deploy/kamailio/kamailio.cfg), one
killed (SIGKILL) while both carry calls with media. Its own calls end; every new call goes to
the survivor; nothing else fails."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import pytest

from .gateway_proc import GatewayProcess
from .kamailio_proc import BINARY, Kamailio
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .scenarios import caller_ulaw, run_sipp, sipp_trace, streaming_call
from .test_kamailio import short_call

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("sipp") is None or BINARY is None,
        reason="sipp or kamailio not installed",
    ),
]

LOAD_CALLS = 12
NEW_CALLS = 12


async def answered_in_all(gw1: GatewayProcess, gw2: GatewayProcess, n: int, timeout: float) -> None:
    """Until the two gateways have answered `n` calls between them: woken by either's log (a
    wait on one gateway's log alone would sleep through the other's last answer)."""
    async with asyncio.timeout(timeout):
        while len(gw1.find("call.answered")) + len(gw2.find("call.answered")) < n:
            waits = [
                asyncio.ensure_future(gw.events_after(len(gw.events), timeout=timeout))
                for gw in (gw1, gw2)
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()


async def test_a_gateway_killed_under_load(tmp_path: Path) -> None:
    for name in ("gw1", "gw2", "load", "new"):
        (tmp_path / name).mkdir()
    audio = caller_ulaw(tmp_path / "caller.ulaw")
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
                "-sf", streaming_call(tmp_path / "load.xml", audio, 6000, (200, 481, 408)),
                "-m", LOAD_CALLS, "-l", LOAD_CALLS, "-r", 20, "-i", LOOPBACK,
                "-p", free_udp_port(), "-mp", free_port_block(4),
                "-timeout", 40, "-timeout_error", f"{LOOPBACK}:{kamailio.port}",
            ],
            name="load",
        )  # fmt: skip
        await load.start()
        await answered_in_all(gw1, gw2, LOAD_CALLS, timeout=20)
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
        # Each load call's BYE, by Call-ID: 200 from the survivor for its own calls, 481 (the
        # survivor does not know the dialog) or 408 (no one answered) for the dead one's.
        survivors = {e["sip_call_id"] for e in gw1.find("call.answered")[:on_gw1]}
        victims = {e["sip_call_id"] for e in gw2.find("call.answered")}
        bye: dict[str, set[str]] = {}
        for m in sipp_trace(load.messages_path):
            call_id, cseq = m.transaction
            if not m.sent and cseq.endswith("BYE") and not m.start.startswith("SIP/2.0 1"):
                bye.setdefault(call_id, set()).add(m.start.split()[1])
        report = f"BYE answers {bye}; survivor's calls {survivors}; dead one's {victims}"
        assert {c for c, codes in bye.items() if codes == {"200"}} == survivors, report
        assert {c for c, codes in bye.items() if codes <= {"481", "408"}} == victims, report
        assert not gw2.find("call.ended")  # it had no time to say anything: it was killed
        stats = gw1.find("rtp.stats")
        load_ids = {e["call_id"] for e in gw1.find("call.answered")[:on_gw1]}
        assert all(s["packets_in"] > 100 for s in stats if s["call_id"] in load_ids)
