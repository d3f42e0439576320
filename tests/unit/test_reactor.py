"""The loop's RTP sockets behind one epoll: every socket read, failures reported,
and nothing left registered once the last socket is gone."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.media import reactor as reactor_module
from gateway.media.reactor import SocketReactor

LOOPBACK = "127.0.0.1"


def udp_pair() -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((LOOPBACK, 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    return receiver, sender


async def test_every_socket_is_read_and_a_failing_reader_is_reported() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    reactor = SocketReactor.for_loop(loop)
    assert SocketReactor.for_loop(loop) is reactor
    pairs = [udp_pair() for _ in range(reactor_module.BATCH + 36)]  # more than one batch
    got: dict[int, list[bytes]] = {}
    all_in = loop.create_future()
    expected = 3 * len(pairs)  # the failing socket's three reads included

    def reader(i: int, sock: socket.socket):
        def read() -> None:
            got.setdefault(i, []).append(sock.recv(2048))
            # Whichever socket epoll serves last completes the count (socket 0's third
            # failure may come after every other read).
            if sum(map(len, got.values())) == expected and not all_in.done():
                loop.call_soon(all_in.set_result, None)  # after this reader's own failure
            if i == 0:
                raise RuntimeError("boom")

        return read

    try:
        for i, (receiver, _) in enumerate(pairs):
            reactor.add(receiver.fileno(), reader(i, receiver))
        for n in range(3):
            for _, sender in pairs:
                sender.send(b"%d" % n)
        await asyncio.wait_for(all_in, 5)
        assert all(got[i] == [b"0", b"1", b"2"] for i in range(len(pairs)))
        assert len(errors) == 3 and all("boom" in repr(e["exception"]) for e in errors)
    finally:
        for receiver, sender in pairs:
            reactor.remove(receiver.fileno())
            receiver.close()
            sender.close()
    # The last socket gone, the reactor's epoll is closed and off the loop.
    assert reactor._epoll is not None and reactor._epoll.closed
    assert SocketReactor.for_loop(loop) is not reactor


async def test_a_socket_removed_is_not_read_again() -> None:
    loop = asyncio.get_running_loop()
    reactor = SocketReactor.for_loop(loop)
    (a, a_send), (b, b_send) = udp_pair(), udp_pair()
    read_b = loop.create_future()
    reactor.add(a.fileno(), lambda: pytest.fail("a was removed"))
    reactor.add(b.fileno(), lambda: read_b.set_result(b.recv(2048)))
    reactor.remove(a.fileno())
    reactor.remove(a.fileno())  # twice is harmless
    a_send.send(b"x")
    b_send.send(b"y")
    assert await asyncio.wait_for(read_b, 5) == b"y"
    reactor.remove(b.fileno())
    for s in (a, a_send, b, b_send):
        s.close()
