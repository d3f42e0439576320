"""A network namespace of the test's own with nothing but loopback in it.

Tests that feed the gateway addresses outside loopback (a forged Via, an SDP naming
192.0.2.1) must make sure that, were the gateway to obey them, nothing would leave the
machine. Inside `isolated_network()` the calling thread, every socket it creates and every
process it starts see a fresh namespace in which only ``lo`` exists: a send to any other
address fails with ENETUNREACH (and `strace` still shows that it was tried). The thread goes
back to the namespace it came from at the end; the new one disappears with its last socket
and process.

It needs CAP_SYS_ADMIN (root, as on the project's machines and in CI); `available()` says
whether it can be made here, so a test can skip instead of sending into the real network.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceError(OSError):
    pass


def _call(name: str, *args: int) -> None:
    if getattr(_libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise NamespaceError(errno, f"{name}: {os.strerror(errno)}")


@contextmanager
def isolated_network() -> Iterator[None]:
    """The calling thread in a new network namespace with ``lo`` up, for the block's length."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _call("unshare", CLONE_NEWNET)
        try:
            _loopback_up()
            yield
        finally:
            _call("setns", home, CLONE_NEWNET)
    finally:
        os.close(home)


def _loopback_up() -> None:
    """`ip link set lo up`, without needing iproute2: SIOCSIFFLAGS on a socket of the new
    namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


@functools.cache
def available() -> str | None:
    """None when `isolated_network()` works here, else why not."""
    try:
        with isolated_network():
            pass
    except OSError as exc:
        return f"no network namespace here: {exc}"
    return None
