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
  quarter margin before the end it switches anyway (:mod:`rollover`).

A new session gets the instructions again (session.update) and the conversation so far as
text items (:mod:`conversation`). While it opens, the caller's audio is held (bounded) and sent
to it once it is ready. An answer cut off by a switch is closed for the bridge with a synthetic
``AudioDone``/``ResponseDone(cancelled, "session_replaced")``.

The link keeps the session and the switch; its parts: :mod:`replacement` (sans-I/O: when a
session ends and whether a close reconnects), :mod:`rollover` (the spare and its timing),
:mod:`outbox` (sends, held while a new session takes over), :mod:`feed` (the current
session's events, read by the link's reader itself), :mod:`turns` (where the session stands).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from ..config import AgentConfig, RealtimeConfig
from . import protocol as rt
from .auth import Auth
from .client import STALL_TIMEOUT_S, RealtimeConnectError, RealtimeSession
from .conversation import Conversation
from .feed import Closed, SessionFeed
from .outbox import Outbox
from .replacement import RECONNECT_WITHIN_S, ReplacementPolicy, reconnect_failure
from .rollover import ROLLOVER_RETRY_S, Opener, Rollover
from .turns import MAX_ITEMS, SessionTurns

REPLACED_CLOSE_S = 0.5  # a replaced session's closing handshake, at most

__all__ = ["MAX_ITEMS", "RECONNECT_WITHIN_S", "RealtimeLink", "RealtimePort"]


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
        self._policy = ReplacementPolicy(max_session_s, rollover_margin_s)
        self._stall_s = stall_timeout_s
        self._last_event = time.monotonic()
        self.log = log
        self.conversation = Conversation(bytes_per_ms)
        self.stats = LinkStats()
        # Told each replacement: "reconnect", "reconnect_failed", "rollover" (the timeline).
        self.on_replaced: Callable[[str], None] = _ignore_replaced
        self.close_code: int | None = None
        self._outbox = Outbox()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._feed = SessionFeed(log, stall_timeout_s)
        self._closing: set[asyncio.Future[None]] = set()  # replaced sessions closing
        # Where the current session stands, for the rollover's pause and cut-off answers.
        self.turns = SessionTurns(answers_by_itself)
        self._rollover = Rollover(
            opener, self._policy, lambda: (self._session, self._ends_at), self._roll_over, log
        )
        self._expiry_ignored = False  # an announced expiry was not believed (logged once)
        self._ends_at = self._end_of(session)
        self._feed.start(session)
        self._spawn(self._rollover.run(), "rollover")
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
        opener = session_opener(
            realtime, agent, base_url=base_url, dialect=dialect, auth=auth, codec=codec
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
        await self._outbox.send(self._session, self._session.dialect.encode(command))

    def send_audio(self, audio: bytes, max_backlog_frames: int) -> bool:
        """The caller's audio (an append), written at once; False when the socket is backed
        up by more than ``max_backlog_frames`` such appends and this one was dropped (see
        RealtimeSession.send_now).
        """
        text = self._session.dialect.append_audio(audio)
        return self._outbox.send_now(self._session, text, len(text) * max_backlog_frames)

    async def events(self) -> AsyncIterator[rt.ServerEvent]:
        """Server events of whichever session is current, until the link gives up."""
        while True:
            session, item = await self._feed.get()
            if session is not self._session:
                continue  # a replaced session's late events: never played
            if isinstance(item, Closed):
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
        try:
            for session in (self._session, self._rollover.take_spare()):
                if session is not None:
                    await session.close()
        finally:  # both call back into the link: let go, so the call frees it by refcount
            self._feed.release()
            self._rollover.release()
        self.log.info("realtime.link_closed", **vars(self.stats))

    # --- events of the current session --------------------------------------------------------

    def _observe(self, event: rt.ServerEvent) -> None:
        self._last_event = time.monotonic()
        self.conversation.observe(event)
        if isinstance(event, rt.ServiceError):
            self.stats.service_errors += 1
        elif self.turns.observe(event):
            self._rollover.pause(self.turns.at_pause)

    # --- replacing the session ----------------------------------------------------------------

    async def _reconnect(self, dropped: RealtimeSession, code: int) -> list[rt.ServerEvent] | None:
        """A new session after a drop, within RECONNECT_WITHIN_S; None when the call must end."""
        async with self._lock:
            if self._session is not dropped:
                return []  # a rollover replaced it meanwhile
            if not self._policy.reconnects(code):
                self.log.info("realtime.closed", code=code)
                return None
            self._outbox.hold()
            started = time.monotonic()
            spare = self._rollover.take_spare()
            try:
                async with asyncio.timeout(RECONNECT_WITHIN_S):
                    new = spare or await self._open()
                    cut_off = self.turns.cut_off()
                    replayed = await self._switch(new)
            except (TimeoutError, RealtimeConnectError, ConnectionClosed) as exc:
                self.stats.reconnect_failures += 1
                self.on_replaced("reconnect_failed")
                self.log.error(
                    "realtime.reconnect_failed", code=code, reason=reconnect_failure(exc)
                )
                return None
            self.stats.reconnects += 1
            self.on_replaced("reconnect")
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
                and not self._outbox.holding
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

    async def _roll_over(self, session: RealtimeSession, new: RealtimeSession) -> None:
        """The rollover's switch from `session` to the spare `new`, unless a reconnect came
        first (and used the spare)."""
        async with self._lock:
            if self._session is not session or not self._rollover.claim(new):
                return
            forced = not self._rollover.at_pause
            cut_off = self.turns.cut_off()
            try:
                replayed = await self._switch(new, cut_off)
            except ConnectionClosed as exc:
                self.log.warning("realtime.rollover_failed", reason=repr(exc))
                await new.close()
                await asyncio.sleep(ROLLOVER_RETRY_S)
                return
            self.stats.rollovers += 1
            self.on_replaced("rollover")
            self.log.info(
                "realtime.rolled_over",
                session_id=new.id,
                previous_session_id=session.id,
                forced=forced,
                replayed_items=replayed,
            )

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
        self._rollover.replaced()
        for event in cut_off or ():
            self._feed.put(new, event)
        self._feed.start(new)
        await self._outbox.hand_over(new)
        # The link's reader may be waiting on the old session still (feed.py): it goes on to
        # the new one once the old has closed, so a peer that does not answer the close is
        # not waited for long.
        self._closing.add(asyncio.ensure_future(old.close(REPLACED_CLOSE_S)))
        return len(replay)

    def _end_of(self, session: RealtimeSession) -> float:
        """Monotonic time the session ends (ReplacementPolicy.session_end); an announced
        expiry that was not believed is logged once per call, and max_session_s holds."""
        end = self._policy.session_end(
            session.opened_at,
            session.session.get("expires_at"),
            now=time.monotonic(),
            wall_now=time.time(),
        )
        if end.ignored is not None and not self._expiry_ignored:
            self._expiry_ignored = True
            self.log.warning(
                "realtime.expires_at_ignored",
                session_id=session.id,
                expires_in_s=end.ignored,
                max_session_s=self._policy.max_session_s,
            )
        return end.at

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ignore_replaced(kind: str) -> None:
    """A replacement nobody watches."""


def session_opener(
    realtime: RealtimeConfig,
    agent: AgentConfig,
    *,
    base_url: str,
    dialect: rt.Dialect,
    auth: Auth,
    codec: str,
) -> Opener:
    """Opens each session of one call, configured the same way."""
    return functools.partial(
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
