"""A loopback managed-identity endpoint, for testing Entra ID end to end with azure-identity.

azure-identity's managed-identity credential (the App Service flavour) reads IDENTITY_ENDPOINT
and IDENTITY_HEADER and sends ``GET <endpoint>?api-version=2019-08-01&resource=<scope without
/.default>`` with ``X-IDENTITY-HEADER``; it reads ``access_token`` and ``expires_on``.

DefaultAzureCredential left to itself probes 169.254.169.254 and starts az, pwsh and azd.
:func:`isolated_env` is the only environment it may run in during tests (TESTING.md): only the
managed-identity credential is built (AZURE_TOKEN_CREDENTIALS), it points here, no proxy is
used, and every other AZURE_*, identity and proxy variable is gone.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from .peers import LOOPBACK

RESOURCE = "https://cognitiveservices.azure.com"
_IDENTITY_VARS = (
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
    "MSI_ENDPOINT", "MSI_SECRET",
)  # fmt: skip
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def isolated_env(
    endpoint: str, header: str, base: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """`base` without any Azure, identity or proxy setting, plus the loopback managed identity."""
    env = {
        k: v
        for k, v in base.items()
        if not k.upper().startswith("AZURE_")
        and k.upper() not in _IDENTITY_VARS
        and k.lower() not in _PROXY_VARS
    }
    env.update(
        AZURE_TOKEN_CREDENTIALS="ManagedIdentityCredential",
        IDENTITY_ENDPOINT=endpoint,
        IDENTITY_HEADER=header,
        NO_PROXY="*",
        no_proxy="*",
    )
    return env


@dataclass
class TokenRequest:
    resource: str
    api_version: str
    header: str


@dataclass
class LoopbackManagedIdentity:
    """Hands out `token-1-…`, `token-2-…` (or always `token`), each valid for `lifetime_s`
    (negative: already expired)."""

    lifetime_s: float = 3600.0
    status: int = 200
    token: str | None = None  # hand out this token every time instead of new ones
    header: str = field(default_factory=lambda: secrets.token_hex(8))
    requests: list[TokenRequest] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._serial = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.endpoint = ""

    async def _token(self, request: web.Request) -> web.Response:
        got = TokenRequest(
            request.query.get("resource", ""),
            request.query.get("api-version", ""),
            request.headers.get("X-IDENTITY-HEADER", ""),
        )
        self.requests.append(got)
        if got.header != self.header:
            return web.json_response({"error": "invalid identity header"}, status=401)
        if self.status != 200:
            return web.json_response(
                {"error": "invalid_request", "error_description": "Identity not found"},
                status=self.status,
            )
        token = self.token or f"token-{next(self._serial)}-{secrets.token_hex(4)}"
        self.tokens.append(token)
        body = {
            "access_token": token,
            "expires_on": str(int(time.time() + self.lifetime_s)),
            "resource": got.resource,
            "token_type": "Bearer",
        }
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def __aenter__(self) -> LoopbackManagedIdentity:
        app = web.Application()
        app.router.add_get("/msi/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.endpoint = f"http://{LOOPBACK}:{port}/msi/token"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def env(self, base: Mapping[str, str] = os.environ) -> dict[str, str]:
        return isolated_env(self.endpoint, self.header, base)

    def env_changes(self) -> dict[str, str | None]:
        """:meth:`env` as changes to this process's environment (None: remove the variable),
        the form GatewayProcess takes."""
        env = self.env()
        return {**{name: None for name in os.environ if name not in env}, **env}
