"""What systemd's side of sd_notify looks like: a unix datagram socket the test listens on.

The gateway gets its name in `$NOTIFY_SOCKET` and sends one datagram per notification
(`READY=1`, `STATUS=...`, `WATCHDOG=1`, ...), exactly as it would to PID 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Callable


class NotifySocket:
    """Receives sd_notify datagrams. By default in the abstract namespace (`@name`), as
    systemd itself uses, so no path length limit applies; `path` binds a file instead."""

    def __init__(self, path: str | None = None) -> None:
        self.name = path or f"@sipgw-test-{secrets.token_hex(6)}"
        address = "\0" + self.name[1:] if self.name.startswith("@") else self.name
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(address)
        self._sock.setblocking(False)
        self.messages: list[dict[str, str]] = []  # one dict per datagram, in arrival order
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def env(self) -> dict[str, str | None]:
        return {"NOTIFY_SOCKET": self.name}

    async def __aenter__(self) -> NotifySocket:
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._sock.close()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self._sock, 65536)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)
            self._changed.set()

    def with_key(self, key: str) -> list[dict[str, str]]:
        return [m for m in self.messages if key in m]

    async def wait_for(
        self,
        key: str,
        *,
        timeout: float,
        where: Callable[[dict[str, str]], bool] = lambda m: True,
        after: int = 0,
    ) -> dict[str, str]:
        """The first datagram (from index `after` on) holding `key` that satisfies `where`."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for message in self.messages[after:]:
                        if key in message and where(message):
                            return message
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {key} notification within {timeout} s; got {self.messages[-10:]}"
            ) from None
