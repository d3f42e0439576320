"""Errors as RFC 9457 problem details (``application/problem+json``), one shape for every
failure a client of the API can meet."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """A request the API refuses: its HTTP status and a detail written for the client."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def problem_response(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    body |= {"detail": detail} | extra
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=CONTENT_TYPE,
        headers=headers,
    )
