"""Credentials for the Realtime handshake.

A token is checked only at the WebSocket upgrade, so every connection asks for
headers afresh; azure-identity caches the Entra token until near expiry (it
refreshes one that expires within 5 minutes). Each kind of credential also
names the likely cause when the service refuses it, without ever showing it.
"""

from __future__ import annotations

from typing import Protocol


class AuthError(Exception):
    """No credentials could be obtained (e.g. no Entra ID token): the call gets 503."""


class Auth(Protocol):
    async def headers(self) -> dict[str, str]: ...

    def refusal_hint(self, status: int) -> str | None:
        """Why the service likely answered the handshake with `status` (401/403), if known."""
        ...

    async def close(self) -> None: ...


class NoAuth:
    """For the embedded agent or a local proxy that adds credentials itself."""

    async def headers(self) -> dict[str, str]:
        return {}

    def refusal_hint(self, status: int) -> str | None:
        if status in (401, 403):
            return "the service wants credentials but realtime.auth.method is none"
        return None

    async def close(self) -> None:
        return None


class ApiKeyAuth:
    """A key from the environment: Azure's `api-key` header, or `Authorization: Bearer`
    for OpenAI's own API. The key never appears in repr, logs or error messages."""

    def __init__(self, key: str, *, env_name: str, bearer: bool = False) -> None:
        self._key = key
        self._env_name = env_name
        self._bearer = bearer

    def __repr__(self) -> str:
        return f"ApiKeyAuth(<redacted from ${self._env_name}>, bearer={self._bearer})"

    async def headers(self) -> dict[str, str]:
        if self._bearer:
            return {"Authorization": f"Bearer {self._key}"}
        return {"api-key": self._key}

    def refusal_hint(self, status: int) -> str | None:
        if status == 401:
            return (
                f"the API key in ${self._env_name} was refused: a wrong or revoked key, a key "
                "of another resource, or a GA URL that carries api-version"
            )
        if status == 403:
            return (
                f"the API key in ${self._env_name} is not allowed here: key access disabled "
                "on the resource, or a network rule blocks this host"
            )
        return None

    async def close(self) -> None:
        return None


class EntraAuth:
    """Microsoft Entra ID through azure-identity's async DefaultAzureCredential."""

    def __init__(self, scope: str) -> None:
        from azure.identity.aio import DefaultAzureCredential

        self._scope = scope
        self._credential = DefaultAzureCredential()

    async def headers(self) -> dict[str, str]:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = await self._credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            # azure-identity's messages describe the attempts, never the token.
            raise AuthError(f"no Entra ID token for {self._scope}: {_summary(exc)}") from None
        return {"Authorization": f"Bearer {token.token}"}

    def refusal_hint(self, status: int) -> str | None:
        if status == 401:
            return (
                "the Entra ID token was refused: check realtime.auth.entra_scope and that the "
                "identity belongs to the resource's tenant"
            )
        if status == 403:
            return (
                "missing role: the identity needs 'Cognitive Services OpenAI User' on the "
                "Azure OpenAI resource"
            )
        return None

    async def close(self) -> None:
        await self._credential.close()


def _summary(exc: Exception) -> str:
    """azure-identity's multi-line explanation on one line, without the troubleshooting links."""
    text = str(getattr(exc, "message", None) or exc)
    lines = [line.strip() for line in text.splitlines()]
    kept = [line for line in lines if line and not line.startswith("To mitigate")]
    return " ".join(kept)[:500]
