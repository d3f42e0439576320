"""A call's link to the Realtime service: one session at a time, replaced when it must be.

The bridge uses the link through :class:`RealtimePort`: typed commands in (``send``, encoded
in the current session's dialect), the caller's audio in (``send_audio``), server events out
(``events``). Inside, the link replaces the session twice over:

* **reconnect**: the socket drops or closes with 1001/1006/1011/1012/1013 (the codes the SDK
  itself reconnects on, REALTIME_PROTOCOL.md section 6). One new session is opened; if it is
  configured within 2 s the call goes on, else the events end and the bridge hangs up (BYE).
* **rollover**: a session ends at the service's limit (Azure 30 min, OpenAI 60). Ahead of it
  the next session is opened in parallel and the call switches at the first pause (no one
  speaking, no answer due), so the caller hears no gap and no two answers; at the latest a
  quarter margin before the end it switches anyway.

A new session gets the instructions again (session.update) and the conversation so far as
text items (:mod:`conversation`). While it opens, the caller's audio is held (bounded) and sent
to it once it is ready. An answer cut off by a switch is closed for the bridge with a synthetic
``AudioDone``/``ResponseDone(cancelled, "session_replaced")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from ..config import AgentConfig, RealtimeConfig
from . import protocol as rt
from .auth import Auth
from .client import STALL_TIMEOUT_S, RealtimeConnectError, RealtimeSession
from .conversation import Conversation
from .turns import MAX_ITEMS, SessionTurns

__all__ = ["MAX_ITEMS", "RECONNECT_WITHIN_S", "RealtimeLink", "RealtimePort", "rollover_times"]

RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013})
RECONNECT_WITHIN_S = 2.0
PENDING_EVENTS = 150  # 3 s of 20 ms appends held while a new session opens
EVENT_QUEUE = 64
ROLLOVER_RETRY_S = 2.0
MIN_SESSION_S = 2.0  # an announced expiry sooner than this after opening is not believed

Opener = Callable[[], Awaitable[RealtimeSession]]


class RealtimePort(Protocol):
    """All a call uses of its link to the service (RealtimeLink, or a stand-in in a test)."""

    close_code: int | None
    conversation: Conversation

    async def send(self, command: rt.ClientCommand) -> None: ...

    def send_audio(self, audio: bytes, max_backlog_frames: int) -> bool: ...

    def events(self) -> AsyncIterator[rt.ServerEvent]: ...


@dataclass
class LinkStats:
    reconnects: int = 0
    reconnect_failures: int = 0
    rollovers: int = 0
    service_errors: int = 0


@dataclass(slots=True)
class _Closed:
    code: int


class RealtimeLink:
    """The current session of a call, replaced on a drop or before the session limit."""

    def __init__(
        self,
        opener: Opener,
        session: RealtimeSession,
        *,
        max_session_s: float,
        rollover_margin_s: float,
        bytes_per_ms: int,
        answers_by_itself: bool,
        log: Any,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        self._open = opener
        self._session = session
        self._max_session_s = max_session_s
        self._margin_s = rollover_margin_s
        self._stall_s = stall_timeout_s
        self._last_event = time.monotonic()
        self.log = log
        self.conversation = Conversation(bytes_per_ms)
        self.stats = LinkStats()
        self.close_code: int | None = None
        self._queue: asyncio.Queue[tuple[RealtimeSession, Any]] = asyncio.Queue(EVENT_QUEUE)
        self._pending: deque[str] = deque(maxlen=PENDING_EVENTS)
        self._holding = False  # sends go to _pending while a new session takes over
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Future[None]] = set()  # replaced sessions closing
        self._spare: RealtimeSession | None = None
        # Where the current session stands, for the rollover's pause and cut-off answers.
        self.turns = SessionTurns(answers_by_itself)
        self._pause = asyncio.Event()
        self._pause.set()
        self._replaced = asyncio.Event()  # set each time a new session takes over
        self._expiry_ignored = False  # an announced expiry was not believed (logged once)
        self._ends_at = self._end_of(session)
        self._start_pump(session)
        self._spawn(self._rollover_loop(), "rollover")
        self._spawn(self._stall_watch(), "stall-watch")

    @classmethod
    async def open(cls, opener: Opener, **kwargs: Any) -> RealtimeLink:
        """Open the first session (a failure raises RealtimeConnectError: the call gets 503)."""
        return cls(opener, await opener(), **kwargs)

    @classmethod
    async def connect(
        cls,
        realtime: RealtimeConfig,
        agent: AgentConfig,
        *,
        base_url: str,
        dialect: rt.Dialect,
        auth: Auth,
        codec: str,
        log: Any,
    ) -> RealtimeLink:
        """A link for one call, each of its sessions opened and configured the same way."""
        opener = functools.partial(
            RealtimeSession.open,
            base_url=base_url,
            deployment=realtime.deployment,
            dialect=dialect,
            auth=auth,
            agent=agent,
            audio_format=realtime.audio_format,
            codec=codec,
            connect_timeout=realtime.connect_timeout_s,
            stall_timeout=realtime.stall_timeout_s,
        )
        turns = agent.turn_detection
        return await cls.open(
            opener,
            max_session_s=realtime.max_session_s,
            rollover_margin_s=realtime.rollover_margin_s,
            bytes_per_ms=rt.bytes_per_ms(realtime.audio_format),
            answers_by_itself=turns.type != "none" and turns.create_response,
            log=log,
            stall_timeout_s=realtime.stall_timeout_s,
        )

    # --- what the bridge sees -----------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._session.id

    async def send(self, command: rt.ClientCommand) -> None:
        """Send to the current session, in its dialect; never fails on a dropped socket
        (events() decides)."""
        if isinstance(command, rt.Truncate) and command.item_id not in self.turns.items:
            return  # an answer of a replaced session: the new one has it as text only
        text = self._session.dialect.encode(command)
        if self._holding:
            self._pending.append(text)
            return
        try:
            await self._session.send(text)
        except ConnectionClosed:
            self._pending.append(text)

    def send_audio(self, audio: bytes, max_backlog_frames: int) -> bool:
        """The caller's audio (an append), written at once; False when the socket is backed
        up by more than ``max_backlog_frames`` such appends and this one was dropped (see
        RealtimeSession.send_now).
        """
        text = self._session.dialect.append_audio(audio)
        if self._holding:
            self._pending.append(text)
            return True
        try:
            return self._session.send_now(text, len(text) * max_backlog_frames)
        except ConnectionClosed:
            self._pending.append(text)
            return True

    async def events(self) -> AsyncIterator[rt.ServerEvent]:
        """Server events of whichever session is current, until the link gives up."""
        while True:
            session, item = await self._queue.get()
            if session is not self._session:
                continue  # a replaced session's late events: never played
            if isinstance(item, _Closed):
                replaced = await self._reconnect(session, item.code)
                if replaced is None:
                    self.close_code = item.code
                    return
                for event in replaced:
                    yield event
                continue
            self._observe(item)
            yield item

    async def close(self) -> None:
        """End every task and session of this link."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._closing, return_exceptions=True)
        for session in (self._session, self._spare):
            if session is not None:
                await session.close()
        self._spare = None
        self.log.info("realtime.link_closed", **vars(self.stats))

    # --- events of the current session --------------------------------------------------------

    def _observe(self, event: rt.ServerEvent) -> None:
        self._last_event = time.monotonic()
        self.conversation.observe(event)
        if isinstance(event, rt.ServiceError):
            self.stats.service_errors += 1
        elif self.turns.observe(event):
            if self.turns.at_pause:
                self._pause.set()
            else:
                self._pause.clear()

    # --- replacing the session ----------------------------------------------------------------

    async def _reconnect(self, dropped: RealtimeSession, code: int) -> list[rt.ServerEvent] | None:
        """A new session after a drop, within RECONNECT_WITHIN_S; None when the call must end."""
        async with self._lock:
            if self._session is not dropped:
                return []  # a rollover replaced it meanwhile
            if code not in RECONNECT_CODES:
                self.log.info("realtime.closed", code=code)
                return None
            self._holding = True
            started = time.monotonic()
            spare, self._spare = self._spare, None
            try:
                async with asyncio.timeout(RECONNECT_WITHIN_S):
                    new = spare or await self._open()
                    cut_off = self.turns.cut_off()
                    replayed = await self._switch(new)
            except (TimeoutError, RealtimeConnectError, ConnectionClosed) as exc:
                self.stats.reconnect_failures += 1
                why = (
                    exc.reason
                    if isinstance(exc, RealtimeConnectError)
                    else "timed out"
                    if isinstance(exc, TimeoutError)
                    else f"the new session closed ({exc})"
                )
                self.log.error(
                    "realtime.reconnect_failed",
                    code=code,
                    reason=f"no new session within {RECONNECT_WITHIN_S:g} s: {why}",
                )
                return None
            self.stats.reconnects += 1
            self.log.warning(
                "realtime.reconnected",
                code=code,
                session_id=new.id,
                replayed_items=replayed,
                reconnect_ms=round((time.monotonic() - started) * 1000),
            )
            return cut_off

    async def _stall_watch(self) -> None:
        """An answer in progress whose events stop for stall_timeout_s: the service stalled
        (it may still answer pings). The socket is dropped, so the reconnect replaces the
        session (or the call ends with BYE)."""
        while True:
            await asyncio.sleep(self._stall_s / 4)
            silent = time.monotonic() - self._last_event
            if (
                self.turns.response is not None
                and silent > self._stall_s
                and not self._holding
                and not self._session.closing  # the keepalive caught it first
            ):
                self.log.warning(
                    "realtime.stalled",
                    session_id=self._session.id,
                    waited_for="the rest of an answer",
                    silent_s=round(silent, 1),
                    stall_timeout_s=self._stall_s,
                )
                self._session.abort()
                self._last_event = time.monotonic()  # once per stall

    async def _rollover_loop(self) -> None:
        """Before each session's end: open the next one, switch at a pause."""
        while True:
            session = self._session
            self._replaced.clear()
            opens_at, force_at = rollover_times(session.opened_at, self._ends_at, self._margin_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, opens_at - time.monotonic())):
                    await self._replaced.wait()  # a reconnect starts the count anew
            new = await self._open_spare(session, force_at)
            if new is None:
                # Replaced meanwhile, or no spare could be opened: then the session ends at its
                # limit and the reconnect path takes over. Either way, start on the next one.
                await self._replaced.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, force_at - time.monotonic())):
                    await self._pause.wait()
            async with self._lock:
                if self._session is not session or self._spare is not new:
                    continue  # a reconnect replaced the session (and used the spare)
                self._spare = None
                forced = not self._pause.is_set()
                cut_off = self.turns.cut_off()
                try:
                    replayed = await self._switch(new, cut_off)
                except ConnectionClosed as exc:
                    self.log.warning("realtime.rollover_failed", reason=repr(exc))
                    await new.close()
                    await asyncio.sleep(ROLLOVER_RETRY_S)
                    continue
                self.stats.rollovers += 1
                self.log.info(
                    "realtime.rolled_over",
                    session_id=new.id,
                    previous_session_id=session.id,
                    forced=forced,
                    replayed_items=replayed,
                )

    async def _open_spare(
        self, session: RealtimeSession, give_up_at: float
    ) -> RealtimeSession | None:
        while self._session is session:
            try:
                self._spare = await self._open()
                return self._spare
            except RealtimeConnectError as exc:
                self.log.warning("realtime.rollover_open_failed", reason=exc.reason)
                if time.monotonic() + ROLLOVER_RETRY_S >= give_up_at:
                    return None
                await asyncio.sleep(ROLLOVER_RETRY_S)
        return None

    async def _switch(
        self, new: RealtimeSession, cut_off: list[rt.ServerEvent] | None = None
    ) -> int:
        """Make `new` current: conversation replayed first, then held audio; old one closed.

        `cut_off` events are queued ahead of the new session's own events.
        """
        replay = self.conversation.replay()
        for role, text in replay:
            await new.send(new.dialect.conversation_item(role, text))
        old, self._session = self._session, new
        self._ends_at = self._end_of(new)
        self.turns = SessionTurns(self.turns.answers_by_itself)
        self._pause.set()
        self._replaced.set()
        for event in cut_off or ():
            await self._queue.put((new, event))
        self._start_pump(new)
        with contextlib.suppress(ConnectionClosed):  # its pump reports a drop
            while self._pending:
                await new.send(self._pending[0])
                self._pending.popleft()
        self._holding = False
        self._closing.add(asyncio.ensure_future(old.close()))
        return len(replay)

    def _end_of(self, session: RealtimeSession) -> float:
        """Monotonic time the session ends: our limit, or the expiry the service announced.

        An expiry less than MIN_SESSION_S after the session opened (in the past: a clock far
        off, a service bug) is not believed, or every new session would be rolled over at
        once, in a loop; it is logged once per call and max_session_s holds.
        """
        ends = session.opened_at + self._max_session_s
        expires_at = session.session.get("expires_at")
        if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
            return ends
        announced = time.monotonic() + (expires_at - time.time())
        if math.isfinite(announced) and announced - session.opened_at >= MIN_SESSION_S:
            return min(ends, announced)
        if not self._expiry_ignored:
            self._expiry_ignored = True
            self.log.warning(
                "realtime.expires_at_ignored",
                session_id=session.id,
                expires_in_s=round(expires_at - time.time(), 1)
                if math.isfinite(expires_at)
                else str(expires_at),
                max_session_s=self._max_session_s,
            )
        return ends

    def _start_pump(self, session: RealtimeSession) -> None:
        self._spawn(self._pump(session), f"pump-{session.id}")

    async def _pump(self, session: RealtimeSession) -> None:
        """One session's events into the link's queue, then how it closed."""
        try:
            async for event in session.events():
                await self._queue.put((session, event))
            code = session.close_code or 1006
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            if exc.rcvd is None and exc.sent is not None and "keepalive" in exc.sent.reason:
                self.log.warning(
                    "realtime.stalled",
                    session_id=session.id,
                    waited_for="keepalive pong",
                    stall_timeout_s=self._stall_s,
                )
        await self._queue.put((session, _Closed(code)))

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def rollover_times(opened_at: float, ends_at: float, margin_s: float) -> tuple[float, float]:
    """When to open the next session and when to switch at the latest.

    The margin is capped at half the session's life: a service that announces sessions
    shorter than the margin must not make every new session roll over at once.
    """
    margin = min(margin_s, max(ends_at - opened_at, 0.0) / 2)
    return ends_at - margin, ends_at - margin / 4
