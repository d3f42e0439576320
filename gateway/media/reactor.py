"""Every RTP socket of the event loop behind one epoll set, read in one asyncio callback.

asyncio dispatches each readable socket on its own: a (key, events) tuple from the selector,
a Handle on the ready queue, a context switch into the callback. At 200 calls that is 10,000
dispatches a second for packets whose own work is a few microseconds. Here asyncio watches a
single epoll descriptor; when any RTP socket is readable, one callback asks that epoll which
ones and reads each in turn (measured: 3.0-3.7 against 2.0-2.1 us per packet received, the
recvfrom included).

Level-triggered, like asyncio: a socket with more queued is reported again. At most
``BATCH`` sockets are served per callback, so the rest of the loop (timers, the Realtime
sockets) gets its turn between batches. One socket's failure is logged through the loop's
exception handler, as asyncio would, and the others are still read.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable

__all__ = ["SocketReactor"]

BATCH = 64

_REACTORS: dict[asyncio.AbstractEventLoop, SocketReactor] = {}


class SocketReactor:
    """The loop's epoll set of RTP sockets (``for_loop``), or plain ``add_reader`` without
    epoll (not Linux)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._readers: dict[int, Callable[[], None]] = {}

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop) -> SocketReactor:
        reactor = _REACTORS.get(loop)
        if reactor is None or reactor._loop.is_closed():
            reactor = _REACTORS[loop] = cls(loop)
        return reactor

    def add(self, fd: int, reader: Callable[[], None]) -> None:
        if self._epoll is None:
            self._loop.add_reader(fd, reader)
            return
        if not self._readers:
            self._loop.add_reader(self._epoll.fileno(), self._ready)
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = reader

    def remove(self, fd: int) -> None:
        """Before the socket is closed (a closed descriptor cannot be unregistered)."""
        if self._epoll is None:
            self._loop.remove_reader(fd)
            return
        if self._readers.pop(fd, None) is None:
            return
        self._epoll.unregister(fd)
        if not self._readers:
            # Idle: nothing of this loop stays registered, and a closed loop leaves no entry.
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            _REACTORS.pop(self._loop, None)

    def _ready(self) -> None:
        assert self._epoll is not None
        readers = self._readers
        for fd, _ in self._epoll.poll(0, BATCH):
            reader = readers.get(fd)
            if reader is None:
                continue
            try:
                reader()
            except Exception as exc:  # as asyncio's Handle would: logged, the others go on
                self._loop.call_exception_handler(
                    {"message": "RTP socket reader failed", "exception": exc}
                )
