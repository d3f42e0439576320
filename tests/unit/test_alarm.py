"""The pacer's alarm: a timerfd at an absolute deadline on Linux, asyncio.sleep elsewhere."""

from __future__ import annotations

import asyncio
import sys

import pytest

from gateway.media.alarm import Alarm


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux's")
async def test_wakes_at_the_deadline_never_before() -> None:
    loop = asyncio.get_running_loop()
    alarm = Alarm(loop)
    try:
        assert alarm.precise
        for offset in (0.0005, 0.003, 0.0117, -0.01):  # one already past: at once
            deadline = loop.time() + offset
            await alarm.wait_until(deadline)
            assert loop.time() >= deadline
    finally:
        alarm.close()
    assert not alarm.precise  # closed: its descriptor is gone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux's")
async def test_a_moved_wait_returns_at_the_new_deadline_not_the_old() -> None:
    loop = asyncio.get_running_loop()
    alarm = Alarm(loop)
    try:
        alarm.move(loop.time() + 60)  # nothing waiting: nothing armed
        first = loop.time() + 0.005
        waiting = asyncio.ensure_future(alarm.wait_until(first))
        await asyncio.sleep(0)
        later = first + 0.03
        alarm.move(later)
        await asyncio.wait_for(waiting, 5)
        assert loop.time() >= later
    finally:
        alarm.close()


async def test_a_cancelled_wait_leaves_the_alarm_usable() -> None:
    loop = asyncio.get_running_loop()
    alarm = Alarm(loop)
    try:
        waiting = asyncio.ensure_future(alarm.wait_until(loop.time() + 60))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        deadline = loop.time() + 0.002
        await alarm.wait_until(deadline)  # re-armed: the old deadline is forgotten
        assert loop.time() >= deadline
    finally:
        alarm.close()


def test_a_loop_with_its_own_clock_gets_asyncio_sleep() -> None:
    class ShiftedLoop(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return super().time() + 1000.0  # not CLOCK_MONOTONIC: a timerfd would be wrong

    loop = ShiftedLoop()
    try:
        alarm = Alarm(loop)
        assert not alarm.precise
        deadline = loop.time() + 0.002
        loop.run_until_complete(alarm.wait_until(deadline))
        assert loop.time() >= deadline
        alarm.close()
    finally:
        loop.close()
