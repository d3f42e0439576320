"""Waking the pacer on time: a Linux timerfd at an absolute deadline, else asyncio.sleep.

asyncio sleeps through epoll_wait, whose timeout is whole milliseconds, rounded up: every
packet leaves 0-1 ms after its deadline, and two packets in a row differ by up to 2 ms of
the media target's 2 ms budget (gap p99 <= 22 ms). A timerfd armed at the deadline (kernel
hrtimer, absolute CLOCK_MONOTONIC, so no drift either) wakes the same epoll_wait within
~0.3 ms (measured: lateness p99 0.34 ms against 1.3 ms). Python 3.11 has no os.timerfd_*
(3.13 has), so libc is called through ctypes; anywhere that fails, asyncio.sleep it is.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os

__all__ = ["Alarm"]

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = 0o4000
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.timerfd_create  # noqa: B018 - present on Linux only
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


class Alarm:
    """One pacer's wake-ups: ``await alarm.wait_until(t)`` returns at loop time ``t``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fd = -1
        self._waiter: asyncio.Future[None] | None = None
        self._spec = _Itimerspec()  # reused: ctypes objects cost more than the syscall
        self._spec_ref = ctypes.byref(self._spec)
        # asyncio's loop.time() is time.monotonic(), i.e. CLOCK_MONOTONIC; another loop's
        # clock (uvloop's) is not, so only the standard loop gets the timerfd.
        if _LIBC is not None and type(loop).time is asyncio.BaseEventLoop.time:
            fd = _LIBC.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                loop.add_reader(fd, self._fired)

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    async def wait_until(self, deadline: float) -> None:
        if self._fd < 0:
            await asyncio.sleep(deadline - self._loop.time())
            return
        if not self._arm(deadline):
            await asyncio.sleep(deadline - self._loop.time())  # cannot happen with valid input
            return
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def move(self, deadline: float) -> None:
        """Re-arm a pending ``wait_until`` for a new deadline: the old one never fires (the
        pacer's ticks run from polls ahead of the timer; no wake-up is spent on them)."""
        if self._waiter is not None:
            self._arm(deadline)

    def _arm(self, deadline: float) -> bool:
        seconds, nanoseconds = divmod(max(round(deadline * 1e9), 1), 1_000_000_000)
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = seconds, nanoseconds
        assert _LIBC is not None
        return _LIBC.timerfd_settime(self._fd, TFD_TIMER_ABSTIME, self._spec_ref, None) == 0

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
