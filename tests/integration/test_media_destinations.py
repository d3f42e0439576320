"""Where a caller's SDP may send the call's RTP: ``media.allow_to`` (default: the networks of
``sip.allow_from``), through real sockets.

Found by the socket fuzzer (test_fuzz_sockets.py): an INVITE from an admitted address whose
SDP said ``c=IN IP4 203.0.113.9`` was answered 200, and the call's RTP, 50 packets a second,
went to 203.0.113.9 for as long as the call lasted (strace showed the sendto calls; the
network namespace kept them on the machine). Any admitted peer could aim the gateway's media
at a third party, once per call slot.

Each test runs the gateway in a network namespace of its own (netns.py): on the code before
the fix, the packets would otherwise have left the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from . import netns
from .fuzz_mutators import Addresses, Context, Dialog, in_dialog, invite
from .gateway_proc import InProcessGateway
from .peers import LOOPBACK
from .test_fuzz_sockets import UdpChannel

THIRD_PARTY = "127.0.0.3"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(netns.available() is not None, reason=f"{netns.available()}"),
]


@contextlib.asynccontextmanager
async def caller(config: dict[str, Any] | None = None) -> AsyncIterator[tuple[Any, ...]]:
    """A gateway in a namespace of its own, a caller's SIP channel and its RTP socket."""
    with netns.isolated_network():
        async with InProcessGateway(config) as gateway:
            media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            media.bind((LOOPBACK, 0))
            media.setblocking(False)
            channel = UdpChannel(gateway.port, media.getsockname()[1])
            ctx = Context(
                "UDP", LOOPBACK, channel.port, gateway.port, media.getsockname()[1],
                Addresses(THIRD_PARTY, 5060, 5062),
            )  # fmt: skip
            try:
                yield gateway, channel, ctx, media
            finally:
                channel.close()
                media.close()


def offer(ctx: Context, call_id: str, connection: str | None, late: bool = False) -> bytes:
    message = invite(ctx, call_id)
    if late:
        message.body = ""
        message.headers = [(n, v) for n, v in message.headers if n != "Content-Type"]
    elif connection is not None:
        message.body = message.body.replace("c=IN IP4 127.0.0.1", f"c={connection}")
    return message.encode()


async def rtp_arrives(media: socket.socket) -> None:
    """A packet of the call's RTP, sent after now."""
    with contextlib.suppress(BlockingIOError):
        while True:
            media.recv(2048)
    async with asyncio.timeout(5):
        await asyncio.get_running_loop().sock_recv(media, 2048)


async def test_an_offer_naming_an_address_outside_allow_from_gets_488() -> None:
    async with caller() as (gateway, channel, ctx, _):
        for i, connection in enumerate(
            ["IN IP4 203.0.113.9", "IN IP6 2001:db8::1", "IN IP6 ::ffff:203.0.113.9"]
        ):
            channel.send(offer(ctx, f"out{i}", connection))
            answer = await channel.final(f"out{i}", "INVITE")
            assert answer.status == 488, answer.first
        assert gateway.gateway._ports.in_use == 0 and not gateway.gateway.calls
        rejected = gateway.find("call.rejected", status=488)
        assert [e["reason"] for e in rejected] == [
            "c= address 203.0.113.9 is outside media.allow_to",
            "c= address 2001:db8::1 is outside media.allow_to",
            "c= address ::ffff:cb00:7109 is outside media.allow_to",
        ]
        # A loopback third party is inside sip.allow_from (127.0.0.0/8 here): allowed.
        channel.send(offer(ctx, "inside", f"IN IP4 {THIRD_PARTY}"))
        ok = await channel.final("inside", "INVITE")
        assert ok.status == 200
        channel.send(channel._request("BYE", ok, 2))
        assert (await channel.final("inside", "BYE")).status == 200


async def test_a_reinvite_cannot_move_the_rtp_outside() -> None:
    async with caller() as (_, channel, ctx, media):
        channel.send(offer(ctx, "moving", None))
        ok = await channel.final("moving", "INVITE")
        assert ok.status == 200
        await rtp_arrives(media)
        from_tag, to_tag = (ok.get(h).split("tag=")[1] for h in ("from", "to"))
        ctx.dialog = Dialog("moving", from_tag, to_tag, "z9hG4bK-moving")
        reinvite = in_dialog("INVITE", body=True)(ctx)
        reinvite.body = reinvite.body.replace("c=IN IP4 127.0.0.1", "c=IN IP4 203.0.113.9")
        seen = len(channel.received)
        channel.send(reinvite.encode())
        assert (await channel.final("moving", "INVITE", since=seen)).status == 488
        await rtp_arrives(media)  # the call goes on, its RTP where it was
        channel.send(channel._request("BYE", ok, 10))
        assert (await channel.final("moving", "BYE")).status == 200


async def test_a_late_answer_naming_an_address_outside_ends_the_call() -> None:
    async with caller() as (gateway, channel, ctx, _):
        channel.answer_host = "203.0.113.9"  # the ACK's SDP answer names it
        channel.send(offer(ctx, "late", None, late=True))
        assert (await channel.final("late", "INVITE")).status == 200
        ended = await gateway.wait_for(
            "call.ended", timeout=5, where=lambda e: e.get("sip_call_id") == "late"
        )
        assert ended["reason"] == "bad_sdp_answer"
        assert ended["rtp_out"] == 0


async def test_media_allow_to_replaces_the_default() -> None:
    """Listing the trunk's media network opens it, and only it: loopback is then refused."""
    config = {"media": {"allow_to": ["203.0.113.0/24"]}}
    async with caller(config) as (gateway, channel, ctx, _):
        channel.send(offer(ctx, "trunk", "IN IP4 203.0.113.9"))
        ok = await channel.final("trunk", "INVITE")
        assert ok.status == 200
        channel.send(offer(ctx, "loop", "IN IP4 127.0.0.1"))
        assert (await channel.final("loop", "INVITE")).status == 488
        await gateway.wait_for(
            "call.answered", timeout=5, where=lambda e: e["sip_call_id"] == "trunk"
        )
        channel.send(channel._request("BYE", ok, 2))
        assert (await channel.final("trunk", "BYE")).status == 200
        stats = await gateway.wait_for(
            "rtp.stats", timeout=5, where=lambda e: e.get("sip_call_id") == "trunk"
        )
        assert stats["send_errors"] > 0  # it was sent there: the namespace has no route
