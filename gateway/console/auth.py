"""Who may use the console: the API's token, as a bearer header or as a login cookie.

The cookie holds a value derived from the token (HMAC-SHA256), not the token itself; it is
HttpOnly, SameSite=Strict and scoped to ``/console``. A request authenticated by the cookie
that changes anything (any method but GET and HEAD) must also carry ``X-Console: 1`` and, when
the browser sends one, an ``Origin`` of this very server: a page of another site can make a
browser send the cookie (were SameSite ever bypassed) but not a custom header without a CORS
preflight, which this server never grants. A WebSocket's ``Origin`` is checked likewise.
Every comparison is constant-time, as the API's.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from aiohttp import web

COOKIE = "gw_console"
USER_COOKIE = "gw_console_user"
CSRF_HEADER = "X-Console"
COOKIE_PATH = "/console"
SAFE_METHODS = frozenset({"GET", "HEAD"})
_LABEL = re.compile(r"[^A-Za-z0-9 _.@+-]")
MAX_LABEL = 40


class ConsoleAuth:
    """Checks a console request against the API's token (None: no token, loopback only)."""

    def __init__(self, token: bytes | None) -> None:
        self.token = token
        self._session = session_value(token) if token is not None else None

    @property
    def open(self) -> bool:
        return self.token is None

    def bearer_ok(self, request: web.Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return (
            self.token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), self.token)
        )

    def cookie_ok(self, request: web.Request) -> bool:
        given = request.cookies.get(COOKIE, "")
        return self._session is not None and hmac.compare_digest(
            given.encode(errors="replace"), self._session.encode()
        )

    def token_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            given.encode(errors="replace"), self.token
        )

    def login(self, response: web.StreamResponse, user: str) -> None:
        """Set the session cookies on `response` (the token was checked)."""
        assert self._session is not None
        for name, value in ((COOKIE, self._session), (USER_COOKIE, user)):
            response.set_cookie(
                name, value, path=COOKIE_PATH, httponly=True, samesite="Strict", max_age=None
            )


def session_value(token: bytes) -> str:
    """The cookie's value: proves the token was given, and cannot be turned back into it."""
    return hmac.new(token, b"sip-realtime-gateway console session", hashlib.sha256).hexdigest()


def cross_site(request: web.Request, *, websocket: bool = False) -> str | None:
    """Why a cookie-authenticated request may come from another site's page (None: it does
    not). Unsafe methods need the custom header; any Origin sent must be this server's."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return "its Origin is not this server"
    if websocket:
        return None if origin is not None else "a WebSocket from a browser sends its Origin"
    if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
        return f"a console request that changes something needs the {CSRF_HEADER}: 1 header"
    return None


def user_label(request: web.Request) -> str:
    """Who uses the console, as they said at login (for the log, not for trust)."""
    return clean_label(request.cookies.get(USER_COOKIE, "")) or "console"


def clean_label(text: str) -> str:
    return _LABEL.sub("", text)[:MAX_LABEL].strip()
