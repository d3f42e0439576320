"""Asking the decision webhook about a call: the thin asyncio shell around incoming.py.

One HTTP session for the process (connections are kept alive between calls: the hook is asked
on every call's setup path); each ask is bounded by ``timeout_s``, connection included, reads
at most `MAX_ANSWER_BYTES`, follows no redirect, and ends in a `Decision` or a `HookFailed`
whose reason is logged (never the secret: it is only ever in the HMAC).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from ..config import GatewayConfig, hook_secret
from ..config.hooks import CallIncomingHook
from ..startup import StartupError
from .incoming import (
    MAX_ANSWER_BYTES,
    Accept,
    Decision,
    Redirect,
    Reject,
    Rules,
    UnusableAnswer,
    parse_answer,
)
from .signing import SecretError, Signer, new_message_id, unsigned_headers

# Outcomes of an ask, the label of sipgw_hook_incoming_total (a fixed vocabulary).
# (cancelled: the caller hung up while the hook was asked).
OUTCOMES = ("accept", "reject", "redirect", "timeout", "unreachable", "http_error", "bad_answer")
OUTCOMES += ("cancelled",)


class HookFailed(Exception):
    """No usable decision: `outcome` is the metric's label, the message the logged reason."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class DecisionHook:
    """POSTs each new call to ``hooks.call_incoming.url`` and reads the decision."""

    def __init__(self, cfg: CallIncomingHook, secret: str | None) -> None:
        self.cfg = cfg
        self._signer = Signer(secret) if secret is not None else None
        self._session: aiohttp.ClientSession | None = None

    async def ask(self, body: bytes, rules: Rules) -> Decision:
        """The hook's decision about the call described by `body` (request_body's JSON).
        Raises HookFailed; a cancellation (the caller's CANCEL) goes through as it is."""
        message_id = new_message_id()
        headers = (
            self._signer.headers(message_id, body)
            if self._signer is not None
            else unsigned_headers(message_id)
        )
        headers.update({"Content-Type": "application/json", "Accept-Encoding": "identity"})
        timeout = self.cfg.timeout_s
        try:
            async with (
                asyncio.timeout(timeout),
                self._http().post(
                    self.cfg.url, data=body, headers=headers, allow_redirects=False
                ) as response,
            ):
                if not 200 <= response.status < 300:
                    raise HookFailed("http_error", f"the hook answered HTTP {response.status}")
                if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                    raise HookFailed("bad_answer", "the hook answered a compressed body")
                length = response.content_length
                if length is not None and length > MAX_ANSWER_BYTES:
                    raise HookFailed("bad_answer", f"answer larger than {MAX_ANSWER_BYTES} bytes")
                raw = await read_at_most(response.content, MAX_ANSWER_BYTES)
        except TimeoutError:
            raise HookFailed("timeout", f"no answer within {timeout:g} s") from None
        except aiohttp.ClientError as exc:
            why = f"the hook could not be reached ({type(exc).__name__})"
            raise HookFailed("unreachable", why) from None
        try:
            return parse_answer(raw, rules)
        except UnusableAnswer as exc:
            raise HookFailed("bad_answer", str(exc)) from None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,  # the body is read as sent: its size is its size
                cookie_jar=aiohttp.DummyCookieJar(),  # no state from one answer to the next
                trust_env=False,  # no proxy from the environment
            )
        return self._session


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body if it is at most `limit` bytes; HookFailed as soon as it is more (never
    more than ``limit + 1`` bytes are held)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(limit + 1 - size):
        size += len(chunk)
        if size > limit:
            raise HookFailed("bad_answer", f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Declined(Exception):
    """The hook turned the call away (or failed, with on_failure: reject): the final
    response it gets, and the call's end reason."""

    def __init__(
        self,
        reason: str,
        status: int,
        phrase: str,
        headers: dict[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {phrase}")
        self.reason = reason  # hook_rejected, hook_redirected or hook_failed
        self.status = status
        self.phrase = phrase
        self.headers = headers or {}
        self.metadata = dict(metadata or {})


DECLINED_REASONS = ("hook_rejected", "hook_redirected", "hook_failed")


async def decide(
    hook: DecisionHook,
    body: bytes,
    rules: Rules,
    clog: Any,
    count: Callable[[str, float], None],
) -> Accept | None:
    """Ask the hook; the accepted decision, None when routes decide (a failure with
    on_failure: default). Raises Declined for a reject, a redirect, or a failure with
    on_failure: reject. `count(outcome, seconds)` counts each ask once."""
    started = time.monotonic()
    try:
        decision = await hook.ask(body, rules)
    except HookFailed as exc:
        count(exc.outcome, time.monotonic() - started)
        on_failure = hook.cfg.on_failure
        clog.warning("hook.failed", outcome=exc.outcome, reason=exc.reason, on_failure=on_failure)
        if on_failure == "reject":
            raise Declined("hook_failed", 503, "Service Unavailable") from None
        return None
    except asyncio.CancelledError:
        count("cancelled", time.monotonic() - started)
        raise
    elapsed = time.monotonic() - started
    if isinstance(decision, Reject):
        count("reject", elapsed)
        clog.info("hook.decided", action="reject", status=decision.status, ms=_ms(elapsed))
        raise Declined(
            "hook_rejected", decision.status, decision.reason, metadata=decision.metadata
        )
    if isinstance(decision, Redirect):
        count("redirect", elapsed)
        clog.info("hook.decided", action="redirect", target=decision.target, ms=_ms(elapsed))
        contact = {"Contact": f"<{decision.target}>"}
        raise Declined("hook_redirected", 302, "Moved Temporarily", contact, decision.metadata)
    count("accept", elapsed)
    clog.info(
        "hook.decided",
        action="accept",
        profile=decision.profile,
        overrides=sorted(decision.overrides),
        variables=len(decision.variables),
        ms=_ms(elapsed),
    )
    return decision


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def decision_hook(cfg: GatewayConfig) -> DecisionHook | None:
    """hooks.call_incoming's client, with its signing secret from the environment."""
    hook = cfg.hooks.call_incoming
    if hook is None:
        return None
    secret = hook_secret(hook.secret_env)
    if hook.secret_env is not None and secret is None:
        raise StartupError(
            f"hooks.call_incoming.secret_env: environment variable {hook.secret_env} is not set"
        )
    try:
        return DecisionHook(hook, secret)
    except SecretError as exc:
        raise StartupError(f"hooks.call_incoming.secret_env: {exc}") from None
