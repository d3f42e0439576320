"""The load bench's SRTP callers (tests/perf/rtp_caller.py) against a stand-in gateway socket:
what they send is SRTP under the key they offered, what they hear is unprotected under the
key learned from the answers FIFO, and a forged or replayed packet is counted, not heard."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import sys
from pathlib import Path

import pylibsrtp
from pylibsrtp import Policy

from .peers import LOOPBACK, free_port_block

CALLER = Path(__file__).resolve().parents[1] / "perf" / "rtp_caller.py"
PROFILE = Policy.SRTP_PROFILE_AES128_CM_SHA1_80


def session(key: bytes, outbound: bool) -> pylibsrtp.Session:
    kind = Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(Policy(key=key, ssrc_type=kind, srtp_profile=PROFILE))


async def line(stream: asyncio.StreamReader) -> dict:
    async with asyncio.timeout(20):
        return json.loads(await stream.readline())


async def test_srtp_callers_protect_unprotect_and_count_what_fails(tmp_path: Path) -> None:
    base = free_port_block(2)
    csv, fifo = tmp_path / "calls.csv", tmp_path / "answers.fifo"
    os.mkfifo(fifo)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CALLER), "--base", str(base), "--calls", "1",
        "--srtp-csv", str(csv), "--srtp-answers", str(fifo),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    gateway = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert (await line(proc.stdout))["ready"]
        header, row = csv.read_text().splitlines()
        port, offered, _ = row.split(";")
        assert header == "SEQUENTIAL" and int(port) == base
        ours = os.urandom(30)  # the "gateway's" key, as its answer would carry it
        gateway.bind((LOOPBACK, 0))
        gateway.settimeout(10)
        # What SIPp's <log> writes (the caller holds the read end open: this does not block).
        text = f"{base} {base64.b64encode(ours).decode()}\nnot-a-port AAAA\n"
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            assert os.write(fd, text.encode()) == len(text)
        finally:
            os.close(fd)
        proc.stdin.write(f"call {base} {gateway.getsockname()[1]}\nmeasure\n".encode())
        await proc.stdin.drain()

        # The caller's packet is SRTP under the key it offered (and not plain RTP).
        data, addr = await asyncio.to_thread(gateway.recvfrom, 2048)
        clear = session(base64.b64decode(offered), outbound=False).unprotect(data)
        assert len(data) == len(clear) + 10 and len(clear) == 12 + 160

        # Ten good packets back, then one forged (new index, bad tag) and one replayed.
        tx = session(ours, outbound=True)
        sent = [tx.protect(struct.pack("!BBHII", 0x80, 0, 100 + i, 160 * i, 7) + bytes(160))
                for i in range(10)]  # fmt: skip
        forged = bytearray(tx.protect(struct.pack("!BBHII", 0x80, 0, 110, 1600, 7) + bytes(160)))
        forged[-1] ^= 0x01
        for packet in [*sent, bytes(forged), sent[4]]:
            gateway.sendto(packet, addr)
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
        report = await line(proc.stdout)
    finally:
        gateway.close()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert report["packets_received"] == 10 and report["lost"] == 0
    assert report["srtp"] == {
        "answer_keys_learned": 1,
        "auth_failures": 1,
        "replayed": 1,
        "other_errors": 0,
        "before_answer_key": 0,
        "before_answer_key_in_window": 0,
        "bad_answer_lines": 1,
    }
