"""Credentials for the Realtime handshake.

A token is checked only at the WebSocket upgrade, so every connection asks for
headers afresh; azure-identity caches the Entra token until near expiry.
"""

from __future__ import annotations

from typing import Protocol


class Auth(Protocol):
    async def headers(self) -> dict[str, str]: ...

    async def close(self) -> None: ...


class NoAuth:
    """For the embedded agent or a local proxy that adds credentials itself."""

    async def headers(self) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        return None


class ApiKeyAuth:
    """Azure's `api-key` header. The key never appears in repr or logs."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "ApiKeyAuth(<redacted>)"

    async def headers(self) -> dict[str, str]:
        return {"api-key": self._key}

    async def close(self) -> None:
        return None


class EntraAuth:
    """Microsoft Entra ID through azure-identity's async DefaultAzureCredential."""

    def __init__(self, scope: str) -> None:
        from azure.identity.aio import DefaultAzureCredential

        self._scope = scope
        self._credential = DefaultAzureCredential()

    async def headers(self) -> dict[str, str]:
        token = await self._credential.get_token(self._scope)
        return {"Authorization": f"Bearer {token.token}"}

    async def close(self) -> None:
        await self._credential.close()
