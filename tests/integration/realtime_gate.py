"""A TCP gate in front of the embedded Realtime server: it holds every connection until the
test releases it, so a SIP event (a CANCEL, a retransmitted INVITE) can arrive while the
gateway is still opening its Realtime session. It counts connections and sees them close.
"""

from __future__ import annotations

import asyncio
import contextlib

from gateway.agent import EmbeddedRealtimeServer

from .peers import LOOPBACK


class RealtimeGate:
    def __init__(self) -> None:
        self.upstream = EmbeddedRealtimeServer(LOOPBACK, 0)
        self.release = asyncio.Event()
        self.connections = 0  # accepted so far
        self.open = 0  # not yet closed
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://{LOOPBACK}:{port}/openai/v1/realtime"

    async def wait(self, what: str, check: object, timeout: float) -> None:
        """Wait until `check()` holds (re-checked whenever a connection opens or closes)."""
        assert callable(check)
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"realtime gate: {what} not seen within {timeout} s "
                f"(connections={self.connections}, open={self.open})"
            ) from None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self._changed.set()
        try:
            held = bytearray()
            released = asyncio.ensure_future(self.release.wait())
            try:
                while not self.release.is_set():
                    read = asyncio.ensure_future(reader.read(65536))
                    await asyncio.wait({read, released}, return_when=asyncio.FIRST_COMPLETED)
                    if not read.done():
                        read.cancel()
                        continue
                    data = read.result()
                    if not data:
                        return  # the gateway gave up on the connection while it was held
                    held += data
            finally:
                released.cancel()
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.upstream.port)
            up_writer.write(bytes(held))
            await asyncio.wait(
                [
                    asyncio.create_task(_pipe(reader, up_writer)),
                    asyncio.create_task(_pipe(up_reader, writer)),
                ],
                return_when=asyncio.FIRST_COMPLETED,
            )
            up_writer.close()
        finally:
            writer.close()
            self.open -= 1
            self._changed.set()

    async def __aenter__(self) -> RealtimeGate:
        await self.upstream.start()
        self._server = await asyncio.start_server(self._spawn, LOOPBACK, 0)
        return self

    def _spawn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.upstream.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
