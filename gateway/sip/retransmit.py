"""The retransmission schedule run on the loop (RFC 3261 timers E, A and G).

`transactions.py` computes the schedule without I/O; this is the one coroutine every sender of
ours shares to follow it: our BYE and REFER, our session refreshes and the INVITE's final
responses. Kept apart so that none of them needs the UAS to retransmit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .transactions import SipTimers


async def resend(timers: SipTimers, send: Callable[[], None], start: float | None = None) -> None:
    """Send again on the timer G/E schedule, then wait out 64*T1 (from `start`: the first
    send; from now without one)."""
    loop = asyncio.get_running_loop()
    start = loop.time() if start is None else start
    for at in timers.retransmit_offsets():
        await asyncio.sleep(start + at - loop.time())
        send()
    await asyncio.sleep(start + timers.h - loop.time())
