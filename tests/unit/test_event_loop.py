"""``service.event_loop``: the loop the process runs on, and the media path on uvloop's.

The media path uses the loop only through ``add_reader`` (the RTP reactor's epoll set, the
pacer's alarm), ``call_at`` and ``time``: on uvloop's loop the caller's packets are read, the
pacer sends on its clock, and the alarm, which needs the standard loop's clock for its
timerfd, falls back to the loop's own timers.
"""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
import uvloop
from pydantic import ValidationError

from gateway.cli import _loop_factory
from gateway.config.service import ServiceConfig
from gateway.media.alarm import Alarm
from gateway.media.g711 import PCMU
from gateway.media.rtp import RtpSender, parse_rtp
from gateway.media.stream import PortAllocator, RtpStream
from tests.integration.peers import LOOPBACK, free_port_block


def test_the_config_names_the_loop_and_refuses_any_other() -> None:
    assert ServiceConfig().event_loop == "asyncio"
    assert ServiceConfig(event_loop="uvloop").event_loop == "uvloop"
    with pytest.raises(ValidationError, match="event_loop"):
        ServiceConfig(event_loop="trio")


def test_each_name_gets_its_loop() -> None:
    assert _loop_factory("asyncio") is None  # asyncio.Runner's default: the standard loop
    assert _loop_factory("uvloop") is uvloop.new_event_loop


class Talk:
    """A frame source that always has audio."""

    def next_frame(self) -> np.ndarray:
        return np.full(160, 1000, np.int16)


async def _exchange() -> tuple[list[bytes], list[int], bool]:
    """A call's RTP both ways on the running loop: what the stream heard, the sequence
    numbers the caller got from its pacer, and whether the alarm used a timerfd."""
    base = free_port_block(4)
    heard: list[bytes] = []
    all_heard = asyncio.Event()

    def hear(payload: bytes) -> None:
        heard.append(payload)
        if len(heard) == 10:
            all_heard.set()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
        caller.bind((LOOPBACK, 0))
        caller.setblocking(False)
        stream = await RtpStream.open(
            PortAllocator(base, base + 3),
            LOOPBACK,
            lambda: RtpStream(PCMU, 0, caller.getsockname(), hear),
        )
        loop = asyncio.get_running_loop()
        alarm = Alarm(loop)
        precise = alarm.precise
        alarm.close()
        pacer = asyncio.create_task(stream.pace(Talk()))
        sender = RtpSender(0, 160)
        sequences: list[int] = []
        try:
            async with asyncio.timeout(5):
                while len(sequences) < 10:
                    caller.sendto(sender.build(b"\x7f" * 160), (LOOPBACK, stream.port))
                    packet = parse_rtp(await loop.sock_recv(caller, 2048))
                    sequences.append(packet.sequence)
                await all_heard.wait()
        finally:
            pacer.cancel()
            stream.close()
    return heard, sequences, precise


@pytest.mark.parametrize("name", ["asyncio", "uvloop"])
def test_the_media_path_runs_on_each_loop(name: str) -> None:
    with asyncio.Runner(loop_factory=_loop_factory(name)) as runner:
        heard, sequences, precise = runner.run(_exchange())
    assert heard[:10] == [b"\x7f" * 160] * 10
    assert [(s - sequences[0]) & 0xFFFF for s in sequences] == list(range(10))
    assert precise is (name == "asyncio")  # uvloop's clock is its own: no timerfd
