"""What the uplink's hand-built frames take from websockets beyond its documented API.

``RealtimeSession.send_now`` writes each caller frame straight to the connection's transport
(no task hop per packet; 4x cheaper than the sans-I/O ``send_text``: 0.5 against 1.8 us per
frame, ``tests/perf/bench_frame.py``'s neighbour in README "Capacity"). It relies on
``websockets.frames.apply_mask`` (the C speedup), ``ClientConnection.transport`` and on
websockets writing each of its own frames to that transport at once, so that ours never land
inside one of its frames. pyproject pins websockets to the releases checked here; a release
outside that range, or one that changes any of this, fails these tests.
"""

from __future__ import annotations

import asyncio
import os
import re
import tomllib
from pathlib import Path

import pytest
import websockets
from packaging.specifiers import SpecifierSet
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import apply_mask
from websockets.protocol import State

from gateway.realtime.client import RealtimeSession
from gateway.realtime.protocol import GaDialect

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_installed_release_is_within_the_pinned_range() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [spec] = [d for d in dependencies if re.match(r"websockets\b", d)]
    pinned = SpecifierSet(spec.removeprefix("websockets"))
    assert any(s.operator in ("<", "<=", "==") for s in pinned), "no upper bound on websockets"
    assert websockets.__version__ in pinned, f"websockets {websockets.__version__} not {pinned}"


@pytest.mark.parametrize("size", [0, 3, 4, 1350, 70_000])
def test_apply_mask_xors_the_key_over_the_payload(size: int) -> None:
    """RFC 6455 §5.3: octet i is XORed with octet i mod 4 of the key."""
    payload, key = os.urandom(size), os.urandom(4)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert apply_mask(payload, key) == expected


async def test_frames_written_to_the_transport_interleave_with_websockets_own() -> None:
    """Ours, then websockets' own send, a ping, ours again: the server reads each message
    whole and in order, and the connection stays open and usable."""
    received: list[str] = []
    done = asyncio.Event()

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        async for message in ws:
            received.append(message)
            if len(received) == 4:
                done.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            session = RealtimeSession(ws, GaDialect(), {"id": "s"})
            assert ws.state is State.OPEN and not session.closing
            assert session.send_now(GaDialect().append_audio(b"\x01" * 960), 1 << 20)
            await ws.send("theirs")
            async with asyncio.timeout(5):
                await (await ws.ping())
            big = "x" * 70_000  # the 64-bit length form
            assert session.send_now(big, 1 << 20)
            await ws.send("last")
            async with asyncio.timeout(5):
                await done.wait()
            # A backlog above the limit drops the frame and writes nothing.
            assert not session.send_now("dropped", -1)
        assert session.closing
        with pytest.raises(ConnectionClosed):
            session.send_now("after the close", 1 << 20)
    assert received[0].startswith('{"type":"input_audio_buffer.append","audio":"AQEB')
    assert received[1:] == ["theirs", big, "last"]
