"""A webhook tool's HTTP POST, with the network and the service treated as hostile.

Whatever the service (or DNS, or a man in the middle of plain HTTP) answers, the gateway:
- reaches only public addresses unless the tool has ``allow_private_addresses``: a name is
  resolved once, every address it yields is checked, and the connection goes to those very
  addresses (the resolver below), so a DNS that answers differently the second time
  (rebinding) gains nothing;
- follows no redirect (a 3xx could send the request, and its secrets, anywhere);
- reads at most ``MAX_RESPONSE_BYTES`` of the body, undecoded (no zip bomb), and only UTF-8;
- gives up after the tool's ``timeout_s``, lookup included.
Each refusal is a :class:`WebhookError` whose message is written for the model.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..config import WebhookTool
from ..destinations import ip_address_or_none, non_public_kind

MAX_RESPONSE_BYTES = 64 * 1024  # a tool answer for a voice agent is a few hundred bytes


class WebhookError(Exception):
    """The webhook gave no usable answer; the message is for the model."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves a host name and hands aiohttp its addresses only when every one is public,
    so the addresses checked are the addresses connected to."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        results: list[ResolveResult] = []
        for info_family, _, proto, _, sockaddr in infos:
            address = ip_address_or_none(str(sockaddr[0]))
            kind = non_public_kind(address) if address is not None else "unknown"
            if kind is not None:
                raise WebhookError(f"{host} resolves to a {kind} address, which is not allowed")
            results.append(
                {
                    "hostname": host,
                    "host": str(sockaddr[0]),
                    "port": int(sockaddr[1]),
                    "family": info_family,
                    "proto": proto,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        if not results:
            raise OSError(f"{host} has no address")
        return results

    async def close(self) -> None:
        """Nothing to release: lookups run in the loop's executor."""


class WebhookClient:
    """The HTTP sessions of one call's webhook tools, closed with the call: one that reaches
    public addresses only, and one for tools allowed to reach private ones."""

    def __init__(self) -> None:
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    async def post(self, spec: WebhookTool, body: dict[str, Any], headers: dict[str, str]) -> str:
        """POST ``body`` as JSON; the response body's text, or WebhookError."""
        if not spec.allow_private_addresses:
            _check_literal(URL(spec.url).raw_host or "")
        session = self._session(spec.allow_private_addresses)
        headers = {**headers, "Accept-Encoding": "identity"}
        try:
            async with (
                asyncio.timeout(spec.timeout_s),
                session.post(spec.url, json=body, headers=headers, allow_redirects=False) as r,
            ):
                if 300 <= r.status < 400:
                    raise WebhookError(
                        f"the service answered a redirect (HTTP {r.status}); redirects are "
                        "not followed"
                    )
                if r.status >= 400:
                    raise WebhookError(f"the service answered HTTP {r.status}")
                if r.headers.get("Content-Encoding", "identity").lower() != "identity":
                    raise WebhookError("the service answered a compressed body")
                if r.content_length is not None and r.content_length > MAX_RESPONSE_BYTES:
                    raise WebhookError(_too_large())
                raw = await read_at_most(r.content, MAX_RESPONSE_BYTES)
        except TimeoutError:
            raise WebhookError(f"no answer within {spec.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise WebhookError(f"the service could not be reached ({type(exc).__name__})") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookError("the service answered a body that is not UTF-8 text") from None

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def _session(self, allow_private: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(allow_private)
        if session is None:
            connector = aiohttp.TCPConnector(
                resolver=None if allow_private else PublicOnlyResolver(), use_dns_cache=False
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # the body is read as sent: its size is its size
                cookie_jar=aiohttp.DummyCookieJar(),  # no state from one answer to the next
                trust_env=False,  # no proxy from the environment: the check sees the target
            )
            self._sessions[allow_private] = session
        return session


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body if it is at most ``limit`` bytes; WebhookError as soon as it is more
    (never more than ``limit + 1`` bytes are held)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(limit + 1 - size):
        size += len(chunk)
        if size > limit:
            raise WebhookError(_too_large())
        chunks.append(chunk)
    return b"".join(chunks)


def _check_literal(host: str) -> None:
    """aiohttp connects to what looks like an IP address without asking the resolver (its
    test, below): such a host is checked here."""
    if ":" not in host and not host.replace(".", "").isdigit():
        return  # a name: PublicOnlyResolver checks what it resolves to
    address = ip_address_or_none(host)
    kind = non_public_kind(address) if address is not None else "malformed"
    if kind is not None:
        raise WebhookError(f"{host} is a {kind} address, which is not allowed")


def _too_large() -> str:
    return f"the service answered more than {MAX_RESPONSE_BYTES // 1024} KiB"
