"""What one new INVITE costs with thousands of INVITE transactions retained (issue 13, item 4).

Transactions are kept after their final response (resent until ACK, up to timer H) and after
the ACK (absorbing retransmissions). aiosipua's transaction layer kept ringing INVITEs for
300 s and scanned every one of them on each new INVITE (3.5 ms at 30,000); the gateway's
table is found by dict lookups. The UAS and the real transport dispatch are driven without a
socket (sends go to a list); each INVITE is refused 486 and never ACKed, so the table grows
by one per INVITE, as under a flood from an admitted source. Prints a JSON report.

    .venv/bin/python tests/perf/bench_transactions.py [--retained 0,10000,30000]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.sip import udp as sip_transport
from gateway.sip.answer import reject
from gateway.sip.uas import GatewayUAS

SOURCE = ("127.0.0.1", 5070)


def invite(i: int) -> bytes:
    return (
        f"INVITE sip:echo@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-b{i};rport\r\n"
        f"From: <sip:c@127.0.0.1>;tag=t{i}\r\nTo: <sip:echo@127.0.0.1>\r\n"
        f"Call-ID: b{i}@127.0.0.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:c@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def wire() -> Any:
    """The real UDP transport with its socket replaced by a counter."""
    if hasattr(sip_transport, "Listener"):
        from gateway.sip.door import Door

        class Wire(sip_transport.UdpTransport):
            sent = 0

            def send_to(self, data: Any, addr: Any) -> None:
                Wire.sent += 1

            def feed(self, data: bytes) -> None:
                self._received(data, SOURCE)

        return Wire(("127.0.0.1", 5060), Door([ipaddress.ip_network("127.0.0.0/8")]))

    class OldWire(sip_transport.UdpTransport):  # before the transport was ours
        sent = 0

        def send(self, message: Any, addr: Any) -> None:
            OldWire.sent += 1

        def feed(self, data: bytes) -> None:
            self._dispatch(data, SOURCE)

    return OldWire(local_addr=("127.0.0.1", 5060))


async def run(retained: list[int], samples: int) -> dict[str, Any]:
    w = wire()
    uas = GatewayUAS(w, user_agent="bench")
    w.on_message = uas._on_message

    def refuse(call: Any) -> None:
        reject(call, 486, "Busy Here")
        uas.forget(call)

    uas.on_invite = refuse
    results = {}
    n = 0
    for target in sorted(retained):
        while n < target:
            w.feed(invite(n))
            n += 1
        times = []
        for _ in range(samples):
            data = invite(n)
            n += 1
            started = time.perf_counter()
            w.feed(data)
            times.append(time.perf_counter() - started)
        times.sort()
        results[str(target)] = {
            "table": len(uas.invites),
            "per_invite_us_p50": round(statistics.median(times) * 1e6, 1),
            "per_invite_us_p99": round(times[int(0.99 * (len(times) - 1))] * 1e6, 1),
        }
    for txn in uas.invites.all():
        if txn.timer is not None:
            txn.timer.cancel()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--retained", default="0,10000,30000")
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    retained = [int(x) for x in args.retained.split(",")]
    report = asyncio.run(run(retained, args.samples))
    print(json.dumps({"retained": report}, indent=1))
