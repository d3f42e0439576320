"""The Realtime client for every way people connect, over real WebSockets on 127.0.0.1.

The fake Realtime service is the embedded agent; every client event the gateway's code sends
it is validated strictly against the SDK's models for the dialect of that connection. What is
checked: each dialect's handshake and session set-up, reconnect after a drop (close 1011, a dead
socket), a failed or slow reconnect ending the call, benign and other errors ending nothing, and
the rollover before the session limit (no audio lost, no answer played twice).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from gateway.agent import CHIME_TRANSCRIPT, ECHO_TRANSCRIPT, EmbeddedRealtimeServer
from gateway.config import GatewayConfig, parse_config
from gateway.realtime import protocol as rt
from gateway.realtime.auth import ApiKeyAuth, Auth, NoAuth
from gateway.realtime.client import RealtimeSession
from gateway.realtime.conversation import cut_text
from gateway.realtime.link import MAX_ITEMS, RECONNECT_WITHIN_S, REPLACED_CLOSE_S, RealtimeLink
from tests.realtime_schema import validate_client_event, validate_preview_client_event
from tests.unit.test_embedded import noise, pcm, speechlike

from .peers import LOOPBACK

TIMEOUT = 10.0
FRAME = 480  # 20 ms at 24 kHz


class Recorder:
    """Stands in for a structlog logger: keeps (event, fields) and wakes waiters."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    def _log(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))
        self.changed.set()

    debug = info = warning = error = _log

    def find(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.lines if name == event]

    async def wait(self, event: str) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while not self.find(event):
                self.changed.clear()
                await self.changed.wait()
        return self.find(event)[0]


class Reader:
    """Reads link.events() as the bridge does, and lets the test wait for what arrived."""

    def __init__(self, link: RealtimeLink) -> None:
        self.link = link
        self.events: list[rt.ServerEvent] = []
        self.changed = asyncio.Event()
        self.ended_at: float | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for event in self.link.events():
                self.events.append(event)
                self.changed.set()
        finally:
            self.ended_at = time.monotonic()
            self.changed.set()

    async def wait(self, pred: Callable[[rt.ServerEvent], bool], start: int = 0) -> rt.ServerEvent:
        async with asyncio.timeout(TIMEOUT):
            while True:
                for event in self.events[start:]:
                    if pred(event):
                        return event
                if self.ended_at is not None:
                    raise AssertionError(f"the link ended; events: {self.events}")
                self.changed.clear()
                await self.changed.wait()

    async def ended(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            await self.task


def config(realtime: dict[str, Any] | None = None, **agent: Any) -> GatewayConfig:
    return parse_config({"realtime": realtime or {}, "agent": agent})


@contextlib.asynccontextmanager
async def linked(
    server: EmbeddedRealtimeServer,
    cfg: GatewayConfig,
    *,
    base_url: str | None = None,
    auth: Auth | None = None,
) -> AsyncIterator[tuple[RealtimeLink, Reader, Recorder]]:
    log = Recorder()
    link = await RealtimeLink.connect(
        cfg.realtime,
        cfg.agent,
        base_url=base_url or server.url,
        dialect=rt.dialect_for(cfg.realtime.protocol, cfg.realtime.api_version),
        auth=auth or NoAuth(),
        codec="PCMU",
        log=log,
    )
    reader = Reader(link)
    try:
        yield link, reader, log
    finally:
        reader.task.cancel()
        await asyncio.gather(reader.task, return_exceptions=True)
        await link.close()
        assert not link._tasks
        for session in server.sessions:
            await asyncio.wait_for(session.wait_closed(), TIMEOUT)
        assert_valid_client_events(server)


def assert_valid_client_events(server: EmbeddedRealtimeServer) -> None:
    """Every event the gateway's code sent, strictly valid for the dialect it was sent in."""
    for session in server.sessions:
        check = (
            validate_preview_client_event if session.dialect == "preview" else validate_client_event
        )
        for event in session.received:
            check(event)


def is_done(event: rt.ServerEvent) -> bool:
    return isinstance(event, rt.ResponseDone)


async def send_audio(link: RealtimeLink, samples: np.ndarray) -> int:
    frames = 0
    for i in range(0, len(samples), FRAME):
        frames += link.send_audio(samples[i : i + FRAME].astype("<i2").tobytes(), 1000)
    return frames


def appends(session: Any) -> int:
    return sum(e["type"] == "input_audio_buffer.append" for e in session.received)


def items(session: Any) -> list[tuple[str, str]]:
    return [
        (e["item"]["role"], e["item"]["content"][0]["text"])
        for e in session.received
        if e["type"] == "conversation.item.create"
    ]


@pytest.fixture
async def server() -> AsyncIterator[EmbeddedRealtimeServer]:
    async with EmbeddedRealtimeServer(burst_speed=40.0) as srv:
        yield srv


# --- every dialect and way of authenticating ------------------------------------------------


@pytest.mark.parametrize(
    "way", ["azure-ga-api-key", "azure-preview-api-key", "openai-bearer", "embedded-none"]
)
async def test_each_way_opens_a_configured_session(way: str) -> None:
    key = "k3y-for-the-test"
    async with EmbeddedRealtimeServer(
        burst_speed=40.0, api_key=None if way.endswith("none") else key
    ) as server:
        if way == "azure-ga-api-key":
            realtime, base, auth = {}, server.url, ApiKeyAuth(key, env_name="K")
        elif way == "azure-preview-api-key":
            realtime = {
                "url": "wss://x.openai.azure.com/openai/realtime",
                "protocol": "preview",
                "api_version": "2025-04-01-preview",
            }
            base, auth = server.preview_url, ApiKeyAuth(key, env_name="K")
        elif way == "openai-bearer":
            realtime = {"url": "wss://api.openai.com/v1/realtime", "auth": {"method": "bearer"}}
            base = server.url.replace("/openai/v1/realtime", "/v1/realtime")
            auth = ApiKeyAuth(key, env_name="K", bearer=True)
        else:
            realtime, base, auth = {}, server.url, NoAuth()
        cfg = config(realtime, instructions="Be the echo line.", input_transcription={})
        async with linked(server, cfg, base_url=base, auth=auth) as (link, reader, _):
            await link.send(rt.CreateResponse("Greet."))
            done = await reader.wait(is_done)
            assert done.status == "completed"
            assert any(isinstance(e, rt.AudioDelta) for e in reader.events)
            transcript = await reader.wait(lambda e: isinstance(e, rt.Transcript))
            assert transcript == rt.Transcript("agent", transcript.item_id, CHIME_TRANSCRIPT)
        session = server.sessions[0]
        first = session.received[0]
        assert first["type"] == "session.update"
        headers = session.headers
        if way == "azure-preview-api-key":
            assert session.dialect == "preview" and headers["OpenAI-Beta"] == "realtime=v1"
            assert session.query == {
                "api-version": "2025-04-01-preview",
                "deployment": "gpt-realtime",
            }
            assert first["session"]["instructions"] == "Be the echo line."
        else:
            assert session.dialect == "ga" and "OpenAI-Beta" not in headers
            assert session.query == {"model": "gpt-realtime"}
            assert first["session"]["instructions"] == "Be the echo line."
        if way == "openai-bearer":
            assert session.path == "/v1/realtime"
            assert headers["Authorization"] == f"Bearer {key}" and "api-key" not in headers
        elif way.endswith("api-key"):
            assert headers["api-key"] == key and "Authorization" not in headers


# --- after the call is up: reconnect ---------------------------------------------------------


async def test_reconnect_after_1011_restores_instructions_and_conversation(server) -> None:
    cfg = config(instructions="Be the echo line.", input_transcription={})
    async with linked(server, cfg) as (link, reader, log):
        await link.send(rt.CreateResponse("Greet."))
        await reader.wait(is_done)
        await send_audio(link, pcm(noise(0.3), speechlike(1.0), noise(0.8)))
        await reader.wait(lambda e: isinstance(e, rt.Transcript) and e.role == "caller")
        await reader.wait(lambda e: isinstance(e, rt.Transcript) and e.text == ECHO_TRANSCRIPT)
        first_id = link.id

        await server.sessions[0].drop(1011)
        reconnected = await log.wait("realtime.reconnected")
        assert reconnected["code"] == 1011 and reconnected["replayed_items"] == 3
        assert reconnected["reconnect_ms"] < RECONNECT_WITHIN_S * 1000
        assert link.id != first_id and link.stats.reconnects == 1

        # The call goes on: a new turn on the new session is echoed.
        mark = len(reader.events)
        await link.send(rt.CreateResponse("Say something."))
        done = await reader.wait(is_done, mark)
        assert done.status == "completed"
        second = server.sessions[1]
        assert second.received[0]["type"] == "session.update"
        assert second.received[0]["session"]["instructions"] == "Be the echo line."
        caller_line = items(second)[1]
        assert items(second) == [
            ("assistant", CHIME_TRANSCRIPT),
            ("user", caller_line[1]),
            ("assistant", ECHO_TRANSCRIPT),
        ]
        assert caller_line[1].startswith("(caller audio, ")
    assert server.sessions[0].close_code == 1011


async def test_reconnect_after_dead_socket_in_the_preview_dialect(server) -> None:
    realtime = {
        "url": "wss://x.openai.azure.com/openai/realtime",
        "protocol": "preview",
        "api_version": "2025-04-01-preview",
    }
    async with linked(server, config(realtime), base_url=server.preview_url) as (link, reader, log):
        await link.send(rt.CreateResponse("Greet."))
        await reader.wait(is_done)
        await server.sessions[0].drop(1006)
        reconnected = await log.wait("realtime.reconnected")
        assert reconnected["code"] == 1006 and reconnected["replayed_items"] == 1
        mark = len(reader.events)
        await link.send(rt.CreateResponse("Again."))
        assert (await reader.wait(is_done, mark)).status == "completed"
        assert items(server.sessions[1]) == [("assistant", CHIME_TRANSCRIPT)]
        assert all(s.dialect == "preview" for s in server.sessions)


async def test_failed_reconnect_ends_the_events(server) -> None:
    async with linked(server, config()) as (link, reader, log):
        server.refuse_status = 503
        await server.sessions[0].drop(1011)
        await reader.ended()
        assert link.close_code == 1011
        failed = log.find("realtime.reconnect_failed")
        assert len(failed) == 1 and "HTTP 503" in failed[0]["reason"]
        assert (link.stats.reconnects, link.stats.reconnect_failures) == (0, 1)


async def test_slow_reconnect_gives_up_after_two_seconds(server) -> None:
    """The new session's server accepts TCP and never answers the upgrade."""
    silent = await asyncio.start_server(lambda r, w: None, LOOPBACK, 0)
    dead_url = f"ws://{LOOPBACK}:{silent.sockets[0].getsockname()[1]}/openai/v1/realtime"
    cfg = config()
    opened = 0

    async def opener() -> RealtimeSession:
        nonlocal opened
        opened += 1
        return await RealtimeSession.open(
            base_url=server.url if opened == 1 else dead_url,
            deployment="d",
            dialect=rt.GaDialect(),
            auth=NoAuth(),
            agent=cfg.agent,
            audio_format="pcm16",
            codec="PCMU",
            connect_timeout=5.0,
        )

    log = Recorder()
    link = await RealtimeLink.open(
        opener,
        max_session_s=1800,
        rollover_margin_s=60,
        bytes_per_ms=48,
        answers_by_itself=True,
        log=log,
    )
    reader = Reader(link)
    try:
        dropped_at = time.monotonic()
        await server.sessions[0].drop(1011)
        await reader.ended()
        waited = reader.ended_at - dropped_at
        assert RECONNECT_WITHIN_S - 0.1 <= waited < RECONNECT_WITHIN_S + 1.5, waited
        assert log.find("realtime.reconnect_failed")[0]["reason"].endswith("timed out")
    finally:
        await link.close()
        silent.close()
        await silent.wait_closed()


async def test_the_caller_audio_held_during_a_reconnect_reaches_the_new_session(server) -> None:
    """The caller keeps talking while the new session opens (held here at a gate the test
    opens): every frame sent meanwhile reaches the new session, in order, byte for byte."""
    cfg = config()
    opened = 0
    reopening, gate = asyncio.Event(), asyncio.Event()

    async def opener() -> RealtimeSession:
        nonlocal opened
        opened += 1
        if opened == 2:
            reopening.set()
            await gate.wait()
        return await RealtimeSession.open(
            base_url=server.url,
            deployment="d",
            dialect=rt.GaDialect(),
            auth=NoAuth(),
            agent=cfg.agent,
            audio_format="pcm16",
            codec="PCMU",
            connect_timeout=5.0,
        )

    log = Recorder()
    link = await RealtimeLink.open(
        opener,
        max_session_s=1800,
        rollover_margin_s=60,
        bytes_per_ms=48,
        answers_by_itself=True,
        log=log,
    )
    reader = Reader(link)
    try:
        await server.sessions[0].drop(1011)
        async with asyncio.timeout(TIMEOUT):
            await reopening.wait()
        # 40 frames (0.8 s of the caller), each one told apart by its sample value.
        frames = [np.full(FRAME, 100 + i, dtype="<i2").tobytes() for i in range(40)]
        for frame in frames:
            assert link.send_audio(frame, 1 << 20)
        gate.set()
        reconnected = await log.wait("realtime.reconnected")
        assert reconnected["code"] == 1011
        mark = len(reader.events)
        await link.send(rt.CreateResponse("Say something."))
        await reader.wait(is_done, mark)  # the service read everything sent before it
        second = server.sessions[1]
        got = [
            base64.b64decode(e["audio"])
            for e in second.received
            if e["type"] == "input_audio_buffer.append"
        ]
        assert len(got) == len(frames), (
            f"{len(frames)} frames were sent during the reconnect, the new session got {len(got)}"
        )
        assert got == frames
    finally:
        reader.task.cancel()
        await asyncio.gather(reader.task, return_exceptions=True)
        await link.close()
    assert_valid_client_events(server)


async def test_an_answer_cut_by_the_caller_is_replayed_as_far_as_it_was_heard(server) -> None:
    """A barge-in truncates the greeting at half its audio (the call core sends the truncate
    and records the cut in the link's conversation, as here); after a reconnect the new
    session is told the greeting's first half (and "…"), not the whole of it, which the
    caller never heard and the model would otherwise believe it said."""
    async with linked(server, config()) as (link, reader, log):
        await link.send(rt.CreateResponse("Greet."))
        await reader.wait(is_done)
        heard = await reader.wait(lambda e: isinstance(e, rt.Transcript) and e.role == "agent")
        item = heard.item_id
        audio_ms = (
            sum(
                len(e.audio)
                for e in reader.events
                if isinstance(e, rt.AudioDelta) and e.item_id == item
            )
            // link.conversation.bytes_per_ms
        )
        await link.send(rt.Truncate(item, audio_ms // 2))
        link.conversation.cut(item, audio_ms // 2)
        await server.sessions[0].drop(1011)
        await log.wait("realtime.reconnected")
        mark = len(reader.events)
        await link.send(rt.CreateResponse("Again."))
        await reader.wait(is_done, mark)
        [(role, text)] = items(server.sessions[1])
        assert role == "assistant"
        assert text != CHIME_TRANSCRIPT, "the whole answer was replayed, though cut at half"
        half = cut_text(CHIME_TRANSCRIPT, audio_ms // 2, audio_ms)
        assert len(half) < len(CHIME_TRANSCRIPT) * 0.6 and text == half + " …", text


async def test_clean_close_is_not_reconnected(server) -> None:
    async with linked(server, config()) as (link, reader, log):
        await server.sessions[0].drop(1000, "bye")
        await reader.ended()
        assert link.close_code == 1000
        assert not log.find("realtime.reconnected") and len(server.sessions) == 1


async def test_error_events_are_counted_and_end_nothing(server) -> None:
    async with linked(server, config()) as (link, reader, _):
        await link.send(rt.CancelResponse())  # nothing to cancel: benign
        benign = await reader.wait(lambda e: isinstance(e, rt.ServiceError))
        assert benign.benign and benign.code == "response_cancel_not_active"
        mark = len(reader.events)
        await link.send(rt.AddText("user", "hello", item_id="item_dup"))
        await link.send(rt.AddText("user", "again", item_id="item_dup"))
        other = await reader.wait(lambda e: isinstance(e, rt.ServiceError), mark)
        assert not other.benign
        await link.send(rt.CreateResponse())
        assert (await reader.wait(is_done, mark)).status == "completed"
        assert link.stats.service_errors == 2 and len(server.sessions) == 1


async def test_item_ids_the_service_makes_up_are_remembered_within_a_bound(server) -> None:
    """Audio of 1000 items in one answer, each with an id of its own: the link remembers at
    most MAX_ITEMS of them (the ids come from the service)."""
    async with linked(server, config()) as (link, reader, _):
        session = server.sessions[0]
        await session.send_raw(json.dumps({"type": "response.created", "response": {"id": "r1"}}))
        for i in range(1000):
            delta = {"response_id": "r1", "item_id": f"item_{i}", "delta": "AAAA"}
            await session.send_raw(json.dumps({"type": "response.output_audio.delta", **delta}))
        await reader.wait(lambda e: isinstance(e, rt.AudioDelta) and e.item_id == "item_999")
        assert 0 < len(link.turns.items) <= MAX_ITEMS and "item_999" in link.turns.items
        assert 0 < len(link.turns.response_items) <= MAX_ITEMS


# --- session limit: rollover ------------------------------------------------------------------


@pytest.mark.parametrize("expires_in_s", [-3600.0, 0.5, float("nan"), -1e300])
async def test_an_expiry_in_the_past_causes_no_rollover_loop(expires_in_s: float) -> None:
    """A service whose session.created announces an expiry already past (its clock is off,
    or it means harm): not believed, logged once, the call goes on in its one session."""
    async with EmbeddedRealtimeServer(burst_speed=40.0) as server:
        server.expires_at = time.time() + expires_in_s
        async with linked(server, config()) as (link, reader, log):
            for _ in range(2):  # two answers: time for a loop to show, were there one
                mark = len(reader.events)
                await link.send(rt.CreateResponse("Greet."))
                assert (await reader.wait(is_done, mark)).status == "completed"
            assert link.stats.rollovers == 0 and len(server.sessions) == 1
            assert not log.find("realtime.rolled_over") and not log.find("realtime.reconnected")
            [ignored] = log.find("realtime.expires_at_ignored")
            assert ignored["max_session_s"] == 1800


async def test_rollover_at_a_pause_loses_no_audio() -> None:
    async with EmbeddedRealtimeServer(burst_speed=40.0, max_session_s=4) as server:
        cfg = config({"rollover_margin_s": 3}, instructions="Be the echo line.")
        async with linked(server, cfg) as (link, reader, log):
            await link.send(rt.CreateResponse("Greet."))
            await reader.wait(is_done)
            sent = 0
            silence = pcm(noise(0.02))
            # The caller's audio keeps flowing, one 20 ms frame at a time, across the switch.
            while not log.find("realtime.rolled_over") or sent < 100:
                sent += await send_audio(link, silence)
                await asyncio.sleep(0.02)  # the caller's clock, not a synchronisation
                assert sent < 500, "no rollover within 10 s"
            mark = len(reader.events)
            await link.send(rt.CreateResponse("Again."))
            assert (await reader.wait(is_done, mark)).status == "completed"
            # With a 4 s limit the call may roll over more than once: every switch was at a
            # pause, every replaced session was closed by the gateway (1000) before its limit
            # (1001), and every frame of the caller's audio reached exactly one session.
            rolls = log.find("realtime.rolled_over")
            assert rolls and all(r["forced"] is False for r in rolls)
            assert link.stats.rollovers == len(rolls) and not log.find("realtime.reconnected")
            replaced = server.sessions[: len(rolls)]
            for session in replaced:
                await session.wait_closed()
                assert session.close_code == 1000, "the gateway closes the old session"
            assert sum(appends(s) for s in server.sessions) == sent
            second = server.sessions[1]
            assert appends(second) > 0
            assert items(second) == [("assistant", CHIME_TRANSCRIPT)]
            assert second.received[0]["session"]["instructions"] == "Be the echo line."


async def test_a_replaced_session_that_never_closes_holds_the_new_one_back_briefly() -> None:
    """The link reads the current session's socket itself (no pump): at a rollover it may be
    waiting on the old session, which it leaves once that closes. An old session that stopped
    reading answers no close: dropped after REPLACED_CLOSE_S, so the new session's answer
    reaches the reader within a second of the switch, not after the 2 s close timeout."""
    async with EmbeddedRealtimeServer(burst_speed=40.0, max_session_s=4) as server:
        async with linked(server, config({"rollover_margin_s": 3})) as (link, reader, log):
            await link.send(rt.CreateResponse("Greet."))
            await reader.wait(is_done)
            server.sessions[0].stall()  # neither reads nor sends any more
            rolled = await log.wait("realtime.rolled_over")
            switched = time.monotonic()
            assert rolled["previous_session_id"] == server.sessions[0].id
            mark = len(reader.events)
            await link.send(rt.CreateResponse("Again."))
            await reader.wait(lambda e: isinstance(e, rt.ResponseStarted), mark)
            waited = time.monotonic() - switched
            assert waited < REPLACED_CLOSE_S + 0.7, waited
            old = server.sessions[0]
            old._ws.transport.resume_reading()  # so that it sees what the gateway did
            await asyncio.wait_for(old.wait_closed(), 5)
            assert old.close_code == 1000  # the gateway's close frame, sent before the drop


async def test_rollover_goes_on_after_a_reconnect() -> None:
    async with EmbeddedRealtimeServer(burst_speed=40.0, max_session_s=4) as server:
        async with linked(server, config({"rollover_margin_s": 3})) as (link, _, log):
            await server.sessions[0].drop(1011)
            await log.wait("realtime.reconnected")
            rolled = await log.wait("realtime.rolled_over")
            assert rolled["previous_session_id"] == server.sessions[1].id
            assert link.stats.reconnects == 1 and link.stats.rollovers >= 1


async def test_forced_rollover_cuts_the_answer_once() -> None:
    """An answer still playing at the last moment is closed, and nothing of it comes after."""
    async with EmbeddedRealtimeServer(burst_speed=0.1, max_session_s=4) as server:
        cfg = config({"rollover_margin_s": 3.6})
        async with linked(server, cfg) as (link, reader, log):
            await link.send(rt.CreateResponse("Greet."))
            started = await reader.wait(lambda e: isinstance(e, rt.ResponseStarted))
            rolled = await log.wait("realtime.rolled_over")
            assert rolled["forced"] is True
            done = await reader.wait(is_done)
            assert (done.response_id, done.status, done.reason) == (
                started.response_id,
                "cancelled",
                "session_replaced",
            )
            index = reader.events.index(done)
            assert any(
                isinstance(e, rt.AudioDone) and e.response_id == started.response_id
                for e in reader.events[:index]
            )
            mark = len(reader.events)
            await link.send(rt.CancelResponse())  # proves the new session answers
            await reader.wait(lambda e: isinstance(e, rt.ServiceError), mark)
            late = [
                e
                for e in reader.events[index + 1 :]
                if getattr(e, "response_id", None) == started.response_id
            ]
            assert late == [], "audio of the replaced session's answer was played after the switch"
