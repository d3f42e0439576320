"""Entra ID end to end: the real azure-identity DefaultAzureCredential gets its token from a
loopback managed-identity endpoint, and the fake Realtime service checks `Authorization: Bearer`.

Every DefaultAzureCredential here runs in the isolated environment of TESTING.md (see
managed_identity.isolated_env); `entra_auth` refuses to build one in any other.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from gateway.agent import EmbeddedRealtimeServer
from gateway.config import parse_config
from gateway.realtime import protocol as rt
from gateway.realtime.auth import EntraAuth
from gateway.realtime.client import RealtimeConnectError, RealtimeSession

from .managed_identity import RESOURCE, LoopbackManagedIdentity

SCOPE = RESOURCE + "/.default"
AGENT = parse_config({}).agent


@pytest.fixture
async def identity(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LoopbackManagedIdentity]:
    async with LoopbackManagedIdentity() as mi:
        env = mi.env()
        for name in list(os.environ):
            if name not in env:
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield mi


@pytest.fixture
async def entra_auth(identity: LoopbackManagedIdentity) -> AsyncIterator[EntraAuth]:
    assert os.environ == identity.env(), "DefaultAzureCredential outside the isolated env"
    auth = EntraAuth(SCOPE)
    yield auth
    await auth.close()


async def open_session(server: EmbeddedRealtimeServer, auth: EntraAuth) -> RealtimeSession:
    return await RealtimeSession.open(
        base_url=server.url,
        deployment="gpt-realtime",
        dialect=rt.GaDialect(),
        auth=auth,
        agent=AGENT,
        audio_format="pcm16",
        codec="PCMU",
        connect_timeout=10.0,
    )


async def test_token_from_managed_identity_is_sent_as_bearer_and_cached(
    identity: LoopbackManagedIdentity, entra_auth: EntraAuth
) -> None:
    async with EmbeddedRealtimeServer() as server:
        first = await open_session(server, entra_auth)
        assert len(identity.tokens) == 1
        server.api_key = identity.tokens[0]  # from now on the service accepts only this token
        second = await open_session(server, entra_auth)
        for session in (first, second):
            await session.close()
    assert len(identity.requests) == 1, "a valid token is reused, not fetched per call"
    request = identity.requests[0]
    assert (request.resource, request.api_version) == (RESOURCE, "2019-08-01")
    for session in server.sessions:
        assert session.headers["Authorization"] == f"Bearer {identity.tokens[0]}"
        assert "api-key" not in session.headers


async def test_an_expired_token_is_fetched_afresh_for_the_next_connection(
    identity: LoopbackManagedIdentity, entra_auth: EntraAuth
) -> None:
    identity.lifetime_s = -1  # every token handed out is already past its expiry
    async with EmbeddedRealtimeServer() as server:
        for _ in range(2):
            session = await open_session(server, entra_auth)
            await session.close()
    assert len(identity.requests) == 2 and len(set(identity.tokens)) == 2
    assert [s.headers["Authorization"] for s in server.sessions] == [
        f"Bearer {token}" for token in identity.tokens
    ]


async def test_refused_token_names_the_likely_cause(
    identity: LoopbackManagedIdentity, entra_auth: EntraAuth
) -> None:
    async with EmbeddedRealtimeServer(api_key="another-token") as server:
        with pytest.raises(RealtimeConnectError) as info:
            await open_session(server, entra_auth)
        assert info.value.status == 401 and "Entra ID token was refused" in info.value.reason
        server.api_key, server.refuse_status = None, 403
        with pytest.raises(RealtimeConnectError) as info:
            await open_session(server, entra_auth)
        assert info.value.status == 403 and "missing role" in info.value.reason
        assert "Cognitive Services OpenAI User" in info.value.reason
    assert all(token not in info.value.reason for token in identity.tokens)


async def test_no_token_is_a_connect_error(
    identity: LoopbackManagedIdentity, entra_auth: EntraAuth
) -> None:
    identity.status = 400
    async with EmbeddedRealtimeServer() as server:
        with pytest.raises(RealtimeConnectError) as info:
            await open_session(server, entra_auth)
        assert not server.sessions, "no handshake without a token"
    assert info.value.reason.startswith(f"no Entra ID token for {SCOPE}: "), info.value.reason
    assert (
        "ManagedIdentityCredential" in info.value.reason
        and "Identity not found" in info.value.reason
    )
