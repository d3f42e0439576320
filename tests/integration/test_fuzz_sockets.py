"""A mutation fuzzer over real sockets: SIP over UDP and over TCP (SDP inside), and RTP into a
live call, against the gateway as users run it (a subprocess with the embedded agent, so a
crash shows as its exit).

Invariant, checked every `CHECK_EVERY` inputs and at the end: the process is alive, a normal
OPTIONS gets 200, a normal call is answered, carries RTP and ends cleanly with its BYE, the log
holds no ``sip.handler_failed``, ``call.failed`` or traceback, and **nothing was sent outside
loopback**. For the last, the gateway runs under ``strace`` (every connect, sendto, sendmsg
and sendmmsg with its destination), inside a network namespace of the test's own that holds
nothing but ``lo`` (netns.py): the inputs name 192.0.2.1 and other addresses that are never
ours in Via, Contact, Route and SDP, and were the gateway to obey one, the send fails there
(ENETUNREACH) instead of leaving the machine, and the trace shows that it was tried. A third
party on 127.0.0.3 listens on the SIP port the inputs name and must hear no SIP at all.

Deterministic: `SEED` and a fixed number of inputs; a failure names the batch and lists its
inputs (all of them, bytes included, are in the test's inputs.txt). About 6 s per
transport and 8 s for RTP on 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import netns
from .fuzz_mutators import Addresses, Context, Dialog, RtpState, invite, rtp_input, sip_input
from .gateway_proc import GatewayProcess
from .peers import LOOPBACK
from .test_hostile_network import Peer, options

# CI runs these; a longer campaign on demand:
#   FUZZ_SOCKET_SEED=7 FUZZ_SOCKET_INPUTS=5000 .venv/bin/python -m pytest \
#       tests/integration/test_fuzz_sockets.py
SEED = int(os.environ.get("FUZZ_SOCKET_SEED", "1234"))
INPUTS = int(os.environ.get("FUZZ_SOCKET_INPUTS", "300"))  # per transport; RTP packets
CHECK_EVERY = 25
THIRD_PARTY = "127.0.0.3"
STRANGER = "127.0.0.2"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed"),
    pytest.mark.skipif(netns.available() is not None, reason=f"{netns.available()}"),
]

# What must never appear in the gateway's log (it would mean an exception reached a handler).
BAD_EVENTS = ("sip.handler_failed", "call.failed", "gateway.failed", "sip.listener_failed")


# --------------------------------------------------------------------------------------------
# The gateway under strace
# --------------------------------------------------------------------------------------------

TRACED = "connect,sendto,sendmsg,sendmmsg"
_FAMILY = re.compile(r"sa_family=(AF_\w+)")
_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(
    r'sa_family=AF_INET6, sin6_port=htons\((\d+)\),.*?inet_pton\(AF_INET6, "([^"]+)"'
)


class TracedGateway(GatewayProcess):
    """The gateway under `strace -f`: every destination it sends to or connects to is in
    `trace_path`. Signals go to the gateway itself (strace would kill it at once)."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.trace_path = workdir / "strace.txt"
        wrapper = ["strace", "-f", "-qq", "--seccomp-bpf", "-s", "16", "-e", f"trace={TRACED}",
                   "-e", "signal=none", "-o", str(self.trace_path)]  # fmt: skip
        super().__init__(workdir, config, wrapper=wrapper)

    def _gateway_pid(self) -> int | None:
        if self._proc is None or self._proc.returncode is not None:
            return None
        with contextlib.suppress(OSError, ValueError, IndexError):
            children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children").read_text()
            return int(children.split()[0])
        return None

    async def stop(self, timeout: float = 15.0) -> int | None:
        pid = self._gateway_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(AssertionError):
                await self.wait_exit(timeout)  # strace ends with the gateway, and its code
        return await super().stop(timeout)

    def destinations(self) -> list[tuple[str, str, int]]:
        """(family, address, port) of every traced send and connect."""
        out = []
        for line in self.trace_path.read_text(errors="replace").splitlines():
            families = _FAMILY.findall(line)
            for port, host in _INET.findall(line):
                out.append(("AF_INET", host, int(port)))
            for port, host in _INET6.findall(line):
                out.append(("AF_INET6", host, int(port)))
            parsed = len(_INET.findall(line)) + len(_INET6.findall(line))
            others = [f for f in families if f not in ("AF_INET", "AF_INET6")]
            if len(families) - len(others) != parsed:
                out.append(("unparsed", line[:200], 0))
            out.extend((f, line[:200], 0) for f in others)
        return out

    def foreign_destinations(self) -> list[tuple[str, str, int]]:
        """Every destination that is not loopback (or that is DNS: port 53, anywhere)."""
        bad = []
        for family, host, port in self.destinations():
            if family in ("AF_UNIX", "AF_NETLINK", "AF_UNSPEC"):
                continue
            if family in ("AF_INET", "AF_INET6"):
                addr = ipaddress.ip_address(host)
                if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                    addr = addr.ipv4_mapped
                if addr.is_loopback and port != 53:
                    continue
            bad.append((family, host, port))
        return bad


@contextlib.asynccontextmanager
async def traced_gateway(workdir: Path, transports: list[str]) -> AsyncIterator[TracedGateway]:
    """A traced gateway in a network namespace of its own, with room for many calls."""
    config = {
        "sip": {"transports": transports},
        "media": {"rtp_port_min": 20000, "rtp_port_max": 21999},  # the namespace is ours
    }
    with netns.isolated_network():
        gateway = TracedGateway(workdir, config)
        async with gateway:
            yield gateway


# --------------------------------------------------------------------------------------------
# SIP as the fuzzer receives it
# --------------------------------------------------------------------------------------------


@dataclass
class Sip:
    first: str
    headers: dict[str, list[str]]
    body: str

    @classmethod
    def parse(cls, data: bytes) -> Sip | None:
        text = data.decode(errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        return cls(lines[0], headers, body) if lines[0] else None

    def get(self, name: str) -> str:
        return (self.headers.get(name) or [""])[0]

    @property
    def status(self) -> int:
        parts = self.first.split(" ", 2)
        return int(parts[1]) if self.first.startswith("SIP/2.0 ") and parts[1].isdigit() else 0

    @property
    def cseq_method(self) -> str:
        return self.get("cseq").split()[-1] if self.get("cseq") else ""


def sdp_answer(host: str, port: int) -> str:
    return (
        f"v=0\r\no=- 7 7 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


class Channel:
    """The fuzzer's SIP connection (a UDP socket, or one TCP stream): what it sends, what it
    receives, and the good manners that keep the gateway from filling up: every 2xx to an
    INVITE is ACKed (its call is hung up at the end of the batch: `_hang_up`), every request
    of the gateway's (its BYE) answered 200."""

    transport = "UDP"

    def __init__(self, gateway_port: int, sink_port: int) -> None:
        self.gateway_port = gateway_port
        self.sink_port = sink_port  # where an ACK's SDP answer points
        self.answer_host = LOOPBACK  # and the address it names
        self.received: list[Sip] = []
        self.answered: dict[str, Sip] = {}  # the 2xx of each call the inputs set up
        self._changed = asyncio.Event()
        self._last_rx = time.monotonic()
        self._serial = 0
        self.host, self.port = LOOPBACK, 0

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def _arrived(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        message = Sip.parse(data)
        if message is None:
            return
        self.received.append(message)
        self._changed.set()
        if not message.first.startswith("SIP/2.0 "):
            self._answer(message)
        elif 200 <= message.status < 300 and message.cseq_method == "INVITE":
            self._ack(message)

    def _request(self, method: str, to: Sip, cseq: int, body: str = "") -> bytes:
        self._serial += 1
        uri = re.search(r"<(sips?:[^>]*)>", to.get("contact"))
        lines = [
            f"{method} {uri[1] if uri else f'sip:echo@127.0.0.1:{self.gateway_port}'} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {self.host}:{self.port};branch=z9hG4bK-m{self._serial}",
            "Max-Forwards: 70",
            f"From: {to.get('from')}",
            f"To: {to.get('to')}",
            f"Call-ID: {to.get('call-id')}",
            f"CSeq: {cseq} {method}",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _ack(self, ok: Sip) -> None:
        number = ok.get("cseq").split()[0]
        late = "application/sdp" in ok.get("content-type") and ok.body
        body = sdp_answer(self.answer_host, self.sink_port) if late else ""
        self.send(self._request("ACK", ok, int(number) if number.isdigit() else 1, body))
        self.answered.setdefault(ok.get("call-id"), ok)

    def _answer(self, request: Sip) -> None:
        lines = ["SIP/2.0 200 OK"]
        lines += [f"Via: {v}" for v in request.headers.get("via", [])]
        for name in ("From", "To", "Call-ID", "CSeq"):
            lines.append(f"{name}: {request.get(name.lower())}")
        lines.append("Content-Length: 0")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def quiet(self, period: float = 0.3, limit: float = 5.0) -> None:
        """Until nothing has arrived for `period` (at most `limit` in all): the gateway has
        answered what it will answer."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            left = self._last_rx + period - time.monotonic()
            if left <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, deadline - time.monotonic())):
                    await self._changed.wait()

    async def final(
        self, call_id: str, method: str, timeout: float = 5.0, *, since: int = 0
    ) -> Sip:
        """The final response to our request `method` in `call_id` (the first one received
        after the `since` first messages)."""
        async with asyncio.timeout(timeout):
            while True:
                for message in self.received[since:]:
                    if (
                        message.status >= 200
                        and message.get("call-id") == call_id
                        and message.cseq_method == method
                    ):
                        return message
                self._changed.clear()
                await self._changed.wait()


class UdpChannel(Channel):
    transport = "UDP"

    def __init__(self, gateway_port: int, sink_port: int) -> None:
        super().__init__(gateway_port, sink_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.too_big = 0
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            while True:
                data = self.sock.recv(65535)
                self._arrived(data)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, (LOOPBACK, self.gateway_port))
        except OSError:  # EMSGSIZE: larger than a datagram can be
            self.too_big += 1

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


class TcpChannel(Channel):
    transport = "TCP"

    def __init__(self, gateway_port: int, sink_port: int) -> None:
        super().__init__(gateway_port, sink_port)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def open(self) -> TcpChannel:
        reader, writer = await asyncio.open_connection(LOOPBACK, self.gateway_port)
        self._writer = writer
        self.host, self.port = writer.get_extra_info("sockname")[:2]
        self._reader_task = asyncio.ensure_future(self._read(reader))
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                head = head.lstrip(b"\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(length[1])) if length else b""
                self._arrived(head + body)
        self._changed.set()

    @property
    def closed(self) -> bool:
        return (
            self._writer is None
            or self._writer.is_closing()
            or self._reader_task is None
            or (self._reader_task.done())
        )

    def send(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        if self._reader_task is not None:
            self._reader_task.cancel()


# --------------------------------------------------------------------------------------------
# The invariant
# --------------------------------------------------------------------------------------------


@dataclass
class Fuzz:
    """One run's bookkeeping: what was sent (for the failure message) and what was seen."""

    gateway: TracedGateway
    sink: socket.socket  # the fuzzer's RTP sink: every offer of its points here
    third_party_sip: socket.socket
    third_party_tcp: socket.socket
    third_party_rtp: socket.socket
    labels: list[str] = field(default_factory=list)
    heard: dict[str, int] = field(default_factory=dict)  # by the third party, at the end
    checks: int = 0
    normal_calls: int = 0

    @property
    def addresses(self) -> Addresses:
        return Addresses(
            THIRD_PARTY,
            self.third_party_sip.getsockname()[1],
            self.third_party_rtp.getsockname()[1],
        )

    def context(self, channel: Channel) -> Context:
        return Context(
            channel.transport, channel.host, channel.port, self.gateway.port,
            self.sink.getsockname()[1], self.addresses,
        )  # fmt: skip

    def record(self, label: str, data: bytes) -> None:
        """An input sent: its label for the failure message, its bytes in inputs.txt."""
        self.labels.append(label)
        with (self.gateway.workdir / "inputs.txt").open("a") as out:
            out.write(f"{len(self.labels) - 1} {label} {data!r}\n")

    def where(self, batch: int) -> str:
        first = batch * CHECK_EVERY
        inputs = "\n".join(
            f"  {first + i}: {label}" for i, label in enumerate(self.labels[first:], 0)
        )
        return f"after batch {batch} (seed {SEED}), its inputs:\n{inputs}\n{self.gateway.tail()}"

    async def check(self, batch: int, *, tcp: bool = False) -> None:
        """The invariant (see the module's docstring)."""
        where = self.where(batch)
        gateway = self.gateway
        assert gateway.returncode is None, f"the gateway exited {where}"
        bad = [e for e in gateway.events if e.get("event") in BAD_EVENTS or "exception" in e]
        assert not bad, f"{bad[:3]} {where}"
        not_json = [line for line in gateway.raw if not line.startswith("{")]
        assert not not_json, f"{not_json[:10]} {where}"
        peer = Peer()
        try:
            peer.send(options(f"check{batch}", peer.port), gateway.port)
            assert await peer.final() == 200, f"OPTIONS {where}"
        finally:
            peer.close()
        if tcp:
            channel = await TcpChannel(gateway.port, self.sink.getsockname()[1]).open()
            try:
                call_id = f"check-tcp-{batch}"
                channel.send(options(call_id, channel.port).replace(b"/UDP", b"/TCP"))
                assert (await channel.final(call_id, "OPTIONS")).status == 200, f"TCP {where}"
            finally:
                channel.close()
        await self.normal_call(f"normal-{batch}", where)
        self.checks += 1

    async def normal_call(self, call_id: str, where: str) -> None:
        """INVITE, 200 with SDP, ACK, the gateway's RTP arrives, BYE, 200, call.ended."""
        media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        media.bind((LOOPBACK, 0))
        media.setblocking(False)
        channel = UdpChannel(self.gateway.port, media.getsockname()[1])
        try:
            ctx = Context("UDP", LOOPBACK, channel.port, self.gateway.port,
                          media.getsockname()[1], self.addresses)  # fmt: skip
            channel.send(invite(ctx, call_id).encode())
            ok = await channel.final(call_id, "INVITE", timeout=10)
            assert ok.status == 200, f"normal call answered {ok.first} {where}"
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(5):
                packet = await loop.sock_recv(media, 2048)
            assert packet[0] == 0x80 and len(packet) == 172, f"RTP {packet[:12]!r} {where}"
            channel.send(channel._request("BYE", ok, 2))
            assert (await channel.final(call_id, "BYE")).status == 200, f"BYE {where}"
            await self.gateway.wait_for(
                "call.ended", timeout=5, where=lambda e: e.get("sip_call_id") == call_id
            )
            self.normal_calls += 1
        finally:
            channel.close()
            media.close()

    def third_party_heard(self) -> dict[str, int]:
        heard = {"sip_udp": 0, "sip_tcp": 0, "rtp": 0}
        for name, sock in (("sip_udp", self.third_party_sip), ("rtp", self.third_party_rtp)):
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recv(65535)
                    heard[name] += 1
        with contextlib.suppress(BlockingIOError):
            while True:
                conn, _ = self.third_party_tcp.accept()
                conn.close()
                heard["sip_tcp"] += 1
        return heard

    def close(self) -> None:
        for sock in (self.sink, self.third_party_sip, self.third_party_tcp, self.third_party_rtp):
            sock.close()


def _udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


@contextlib.contextmanager
def fuzz_run(gateway: TracedGateway) -> Iterator[Fuzz]:
    """The fuzzer's sockets, in the gateway's namespace (the caller's thread is in it)."""
    sip = _udp(THIRD_PARTY)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind((THIRD_PARTY, sip.getsockname()[1]))
    tcp.listen(64)
    tcp.setblocking(False)
    fuzz = Fuzz(gateway, _udp(LOOPBACK), sip, tcp, _udp(THIRD_PARTY))
    try:
        yield fuzz
        fuzz.heard = fuzz.third_party_heard()
    finally:
        fuzz.close()


def finish(fuzz: Fuzz) -> dict[str, int]:
    """After the gateway stopped: nothing outside loopback, no SIP at the third party."""
    foreign = fuzz.gateway.foreign_destinations()
    assert not foreign, f"sent outside loopback: {sorted(set(foreign))[:20]}"
    heard = fuzz.heard
    assert heard["sip_udp"] == 0 and heard["sip_tcp"] == 0, f"the third party heard SIP: {heard}"
    return heard


# --------------------------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------------------------


async def _victim(channel: Channel, fuzz: Fuzz, ctx: Context, batch: int) -> Dialog | None:
    """A call of the fuzzer's, for the batch's in-dialog inputs to aim at."""
    call_id = f"victim-{channel.transport}-{batch}"
    channel.send(invite(ctx, call_id).encode())
    try:
        ok = await channel.final(call_id, "INVITE", timeout=10)
    except TimeoutError:
        return None
    if ok.status != 200:
        return None
    from_tag = re.search(r"tag=([^;>\s]+)", ok.get("from"))
    to_tag = re.search(r"tag=([^;>\s]+)", ok.get("to"))
    if from_tag is None or to_tag is None:
        return None
    return Dialog(call_id, from_tag[1], to_tag[1], f"z9hG4bK-{call_id}")


async def _hang_up(channels: list[Channel], transport: str, port: int, sink: int) -> None:
    """BYE every call the batch set up (the victim too), over a new connection: the one a
    call came on may have been closed by the gateway after an unreadable message. They
    lived until now, long enough to send RTP wherever their SDP said."""
    answered = {k: v for channel in channels for k, v in channel.answered.items()}
    cleanup = await _open(transport, port, sink, channels)
    for ok in answered.values():
        cleanup.send(cleanup._request("BYE", ok, 1_000_000))


async def _open(transport: str, port: int, sink: int, channels: list[Channel]) -> Channel:
    channel = UdpChannel(port, sink) if transport == "UDP" else await TcpChannel(port, sink).open()
    channels.append(channel)
    return channel


async def _sip_run(tmp_path: Path, transport: str, pick: Callable[[random.Random], bool]) -> None:
    rng = random.Random(SEED)
    async with traced_gateway(tmp_path, ["udp", "tcp"]) as gateway:
        with fuzz_run(gateway) as fuzz:
            sink = fuzz.sink.getsockname()[1]
            for batch in range(INPUTS // CHECK_EVERY):
                channels: list[Channel] = []
                main = await _open(transport, gateway.port, sink, channels)
                ctx = fuzz.context(main)
                ctx.serial = batch * 1000
                ctx.dialog = await _victim(main, fuzz, ctx, batch)
                for _ in range(CHECK_EVERY):
                    if main.closed:  # the gateway hung up after an unreadable message
                        main = await _open(transport, gateway.port, sink, channels)
                    # A new connection for some inputs, the batch's own for the others.
                    channel = (
                        await _open(transport, gateway.port, sink, channels) if pick(rng) else main
                    )
                    ctx.transport, ctx.host, ctx.port = (
                        channel.transport,
                        channel.host,
                        channel.port,
                    )
                    label, data = sip_input(rng, ctx)
                    fuzz.record(label, data)
                    channel.send(data)
                await asyncio.gather(*(c.quiet() for c in channels))
                await _hang_up(channels, transport, gateway.port, sink)
                await asyncio.gather(*(c.quiet(0.1, 2) for c in channels))
                for channel in channels:
                    channel.close()
                await fuzz.check(batch, tcp=transport == "TCP")
        assert fuzz.checks == INPUTS // CHECK_EVERY
    heard = finish(fuzz)
    print(f"{transport}: {len(fuzz.labels)} inputs, {fuzz.normal_calls} normal calls, "
          f"third party heard {heard}")  # fmt: skip


async def test_sip_over_udp(tmp_path: Path) -> None:
    await _sip_run(tmp_path, "UDP", lambda rng: False)


async def test_sip_over_tcp(tmp_path: Path) -> None:
    """Half the inputs on a new connection, the others on the batch's connection (which the
    gateway may close after an unreadable message: then a new one)."""
    await _sip_run(tmp_path, "TCP", lambda rng: rng.random() < 0.5)


async def test_rtp_into_a_live_call(tmp_path: Path) -> None:
    """Mutated RTP at a live call's port: from the caller's own address (the packets the
    gateway must parse), from a stranger and from another port of the caller's host
    (strict RTP must drop them), paced below the flood guard's rate so that most are read."""
    rng = random.Random(SEED)
    async with traced_gateway(tmp_path, ["udp"]) as gateway:
        with fuzz_run(gateway) as fuzz:
            media = _udp(LOOPBACK)
            stranger, other_port = _udp(STRANGER), _udp(LOOPBACK)
            channel = UdpChannel(gateway.port, media.getsockname()[1])
            call_id = "rtp-fuzz"
            try:
                ctx = Context("UDP", LOOPBACK, channel.port, gateway.port,
                              media.getsockname()[1], fuzz.addresses)  # fmt: skip
                channel.send(invite(ctx, call_id).encode())
                ok = await channel.final(call_id, "INVITE", timeout=10)
                assert ok.status == 200
                port = int(re.search(r"m=audio (\d+)", ok.body)[1])  # type: ignore[index]
                state = RtpState()
                loop = asyncio.get_running_loop()
                start = loop.time()
                for batch in range(INPUTS // CHECK_EVERY):
                    _drain(media)
                    for i in range(CHECK_EVERY):
                        n = batch * CHECK_EVERY + i
                        await asyncio.sleep(max(0.0, start + n / 80 - loop.time()))  # 80/s
                        label, data = rtp_input(rng, state)
                        sender = rng.choices([media, stranger, other_port], [85, 10, 5])[0]
                        target = port + (1 if rng.random() < 0.05 else 0)
                        fuzz.record(f"{label} from {sender.getsockname()}", data)
                        with contextlib.suppress(OSError):
                            sender.sendto(data, (LOOPBACK, target))
                    # The fuzzed call still sends its audio to the caller, and only there.
                    if _drain(media) == 0:
                        async with asyncio.timeout(5):
                            await loop.sock_recv(media, 2048)
                    assert _drain(stranger) == 0 and _drain(other_port) == 0
                    await fuzz.check(batch)
                channel.send(channel._request("BYE", ok, 2))
                assert (await channel.final(call_id, "BYE")).status == 200
                ended = await gateway.wait_for(
                    "call.ended", timeout=5, where=lambda e: e.get("sip_call_id") == call_id
                )
                assert ended["reason"] == "caller_bye"
                stats = next(
                    e for e in gateway.find("rtp.stats") if e.get("sip_call_id") == call_id
                )
            finally:
                channel.close()
                for sock in (media, stranger, other_port):
                    sock.close()
    heard = finish(fuzz)
    print(f"RTP: {len(fuzz.labels)} packets, stats {stats}, third party heard {heard}")


def _drain(sock: socket.socket) -> int:
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(65535)
            count += 1
    return count
