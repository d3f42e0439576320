"""Every INVITE the gateway admits leaves a call record (`records.calls_dir`), whatever ends it:
a 503 at the door (full, or draining), the caller's CANCEL, a 2xx never ACKed, a shutdown, the
end of a drain. Through a socket of the test's (127.0.0.1, inside `sip.allow_from`); the records
are read from disk once the gateway has stopped (stop() waits for its writes).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from .gateway_proc import GatewayProcess, InProcessGateway
from .realtime_gate import RealtimeGate
from .scenarios import FAST_TIMERS, SIP_TESTS
from .test_hostile_network import Peer
from .test_sip_robustness import SDP, request
from .test_sip_transactions import in_dialog_request, next_final, status_of

pytestmark = SIP_TESTS


def records(directory: Path) -> dict[str, dict[str, Any]]:
    """The records on disk, by SIP Call-ID."""
    found = [json.loads(p.read_text()) for p in directory.glob("*.json")]
    return {r["sip_call_id"]: r for r in found}


def calls_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"records": {"calls_dir": str(tmp_path / "calls")}, **extra}


def cseq_method(answer: bytes) -> str:
    line = next(x for x in answer.split(b"\r\n") if x.lower().startswith(b"cseq:"))
    return line.split()[-1].decode()


def with_to_of(data: bytes, answer: bytes) -> bytes:
    """`data` with the To header of `answer` (its tag): the ACK of a non-2xx."""
    to = next(line for line in answer.split(b"\r\n") if line.lower().startswith(b"to:"))
    lines = [to if line.lower().startswith(b"to:") else line for line in data.split(b"\r\n")]
    return b"\r\n".join(lines)


async def answer_call(pbx: Peer, port: int, name: str) -> tuple[bytes, bytes]:
    """INVITE, its 200 and the ACK: (the INVITE, the 200)."""
    invite = request(name, pbx.port, body=SDP)
    pbx.send(invite, port)
    ok = await next_final(pbx, timeout=10)
    assert ok is not None and status_of(ok) == 200, ok
    pbx.send(in_dialog_request(invite, ok, "ACK", 1, f"{name}-ack"), port)
    return invite, ok


async def hang_up(pbx: Peer, port: int, invite: bytes, ok: bytes, name: str) -> None:
    pbx.send(in_dialog_request(invite, ok, "BYE", 2, f"{name}-bye"), port)
    answer = await next_final(pbx, timeout=5)
    assert answer is not None and status_of(answer) == 200, answer


def assert_record(
    found: dict[str, dict[str, Any]], sip_call_id: str, reason: str, status: int | None
) -> None:
    assert sip_call_id in found, f"no call record for {sip_call_id} ({reason}); have {found}"
    record = found[sip_call_id]
    assert (record["state"], record["end_reason"], record["sip_status"]) == (
        "completed",
        reason,
        status,
    ), record
    assert record["ended_at"]


async def test_a_503_because_the_gateway_is_full_leaves_a_record(tmp_path: Path) -> None:
    async with InProcessGateway(calls_config(tmp_path, sip={"max_calls": 1})) as gateway:
        pbx = Peer()
        try:
            invite, ok = await answer_call(pbx, gateway.port, "first")
            pbx.send(request("second", pbx.port, body=SDP), gateway.port)
            assert await pbx.final() == 503
            await hang_up(pbx, gateway.port, invite, ok, "first")
            await gateway.wait_for("call.ended", timeout=10)
        finally:
            pbx.close()
    found = records(tmp_path / "calls")
    assert_record(found, "second", "max_calls", 503)
    assert_record(found, "first", "caller_bye", None)


async def test_a_call_cancelled_while_it_rings_leaves_a_record(tmp_path: Path) -> None:
    async with RealtimeGate() as gate:  # never released: the session stays half-open
        config = calls_config(tmp_path, realtime={"url": gate.url, "auth": {"method": "none"}})
        async with InProcessGateway(config, timers=FAST_TIMERS) as gateway:
            pbx = Peer()
            try:
                invite = request("cancelled", pbx.port, body=SDP)
                pbx.send(invite, gateway.port)
                await gate.wait("the Realtime connection", lambda: gate.connections >= 1, 10)
                cancel = request("cancelled", pbx.port, method="CANCEL", cseq="1 CANCEL")
                pbx.send(cancel, gateway.port)
                got: dict[str, bytes] = {}
                for _ in range(2):  # 200 to the CANCEL, 487 to the INVITE, in either order
                    answer = await next_final(pbx, timeout=5)
                    assert answer is not None, f"only {sorted(got)} answered"
                    got[cseq_method(answer)] = answer
                assert {m: status_of(a) for m, a in got.items()} == {"CANCEL": 200, "INVITE": 487}
                ack = request("cancelled", pbx.port, method="ACK", cseq="1 ACK")
                pbx.send(with_to_of(ack, got["INVITE"]), gateway.port)
                ended = await gateway.wait_for("call.ended", timeout=10)
                assert ended["reason"] == "caller_cancel"
            finally:
                pbx.close()
    # The 487 the caller got is the status of the call it never had (the field's meaning).
    assert_record(records(tmp_path / "calls"), "cancelled", "caller_cancel", 487)


async def test_a_200_never_acked_leaves_a_record(tmp_path: Path) -> None:
    async with InProcessGateway(calls_config(tmp_path), timers=FAST_TIMERS) as gateway:
        pbx = Peer()
        try:
            pbx.send(request("no-ack", pbx.port, body=SDP), gateway.port)
            ended = await gateway.wait_for("call.ended", timeout=20)  # after 64*T1 = 3.2 s
            assert ended["reason"] == "ack_timeout"
        finally:
            pbx.close()
    found = records(tmp_path / "calls")
    assert "no-ack" in found, f"no call record for the unACKed call; have {found}"
    assert (found["no-ack"]["state"], found["no-ack"]["end_reason"]) == (
        "completed",
        "ack_timeout",
    )


async def test_a_call_up_at_shutdown_leaves_a_record(tmp_path: Path) -> None:
    async with InProcessGateway(calls_config(tmp_path)) as gateway:
        pbx = Peer()
        try:
            await answer_call(pbx, gateway.port, "up")
            await gateway.wait_for("call.answered", timeout=10)
        finally:
            pbx.close()
    assert_record(records(tmp_path / "calls"), "up", "shutdown", None)


async def test_draining_refuses_with_503_and_every_call_leaves_a_record(tmp_path: Path) -> None:
    """SIGTERM with a call up: the INVITE that comes during the drain gets 503 and a record
    (draining), the call is hung up at the drain's end and has its record (drain_timeout)."""
    config = calls_config(tmp_path, service={"drain_timeout_s": 2})
    pbx = Peer()
    try:
        async with GatewayProcess(tmp_path, config) as gateway:
            await answer_call(pbx, gateway.port, "up")
            await gateway.wait_for("call.answered", timeout=10)
            gateway.send_signal(signal.SIGTERM)
            await gateway.wait_for("gateway.draining", timeout=10)
            pbx.send(request("late", pbx.port, body=SDP), gateway.port)
            assert await pbx.final() == 503
            assert await gateway.wait_exit(timeout=20) == 0
    finally:
        pbx.close()
    found = records(tmp_path / "calls")
    assert_record(found, "late", "draining", 503)
    assert_record(found, "up", "drain_timeout", None)
