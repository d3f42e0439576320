"""A flood of INVITEs from outside sip.allow_from while a call is up (issue 13, item 3).

The issue's measure: 1,000 INVITEs per second for 10 s from a non-allowed loopback address;
the call's outbound gap p99 must stay <= 22 ms, RSS grow <= 10 MiB, no file be written and the
bytes sent back be no more than the bytes received. Prints a JSON report (and whether each
target held); a real gateway process, SIPp and a pacing probe on loopback.

    .venv/bin/python tests/perf/bench_flood.py [--rate 1000] [--seconds 10] [--drop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.flood import flood
from tests.integration.gateway_proc import GatewayProcess


async def main(rate: int, seconds: float, drop: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        records = [tmp_path / "calls", tmp_path / "transcripts", tmp_path / "recordings"]
        config = {
            "sip": {
                "allow_from": ["127.0.0.1/32"],
                "reject_unknown": "drop" if drop else "respond",
            },
            "records": {
                "calls_dir": str(records[0]),
                "transcripts_dir": str(records[1]),
                "recordings_dir": str(records[2]),
            },
            "logging": {"level": "info"},
        }
        async with GatewayProcess(tmp_path, config) as gateway:
            report = await flood(tmp_path, gateway, rate, seconds, records)
    pacing = report.pacing
    return {
        "reject_unknown": "drop" if drop else "respond",
        **report.as_dict(),
        "targets": {
            "gap_p99_ms<=22": pacing.p99_ms <= 22,
            "rss_growth_mib<=10": report.rss_growth_mib <= 10,
            "no_file": report.files_of_the_stranger == 0,
            "bytes_back<=bytes_in": report.bytes_received <= report.bytes_sent,
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--drop", action="store_true", help="sip.reject_unknown: drop")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.rate, args.seconds, args.drop)), indent=1))
