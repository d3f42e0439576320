"""The control API's HTTP shell: aiohttp on the gateway's own loop, like the metrics server.

Hostile by default: every request carries the bearer token (compared in constant time) unless
the API has none (then it listens on loopback only: the config refuses anything else); bodies
are JSON objects of at most 16 KiB validated by the request models; every error is an RFC 9457
problem; unknown paths and methods too. What a route does to a call is the
:class:`~.controls.CallControls`' business.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from .. import __version__
from ..sip.transfer_context import MAX_SUMMARY_CHARS, sanitise
from . import openapi
from .controls import CallControls
from .door import ApiDoor
from .problems import Problem, problem_response
from .requests import DtmfRequest, PlaceCallRequest, SayRequest, TransferRequest

log = structlog.get_logger("gateway")

MAX_BODY_BYTES = 16 * 1024
Model = TypeVar("Model", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Extension(Protocol):
    """What more the server serves under its own path (the console): its routes, and its own
    door for the requests under ``prefix``."""

    prefix: str

    def add_routes(self, app: web.Application, api: dict[str, Handler]) -> None: ...

    async def authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse: ...

    def close(self) -> None: ...


class ApiServer:
    """Serves the control API until closed."""

    def __init__(
        self,
        controls: CallControls,
        bind: str,
        port: int,
        token: str | None,
        extension: Extension | None = None,
        door: ApiDoor | None = None,
    ) -> None:
        self.controls = controls
        self.extension = extension
        # Counts refusals per source and shuts out who keeps being refused (api.max_failures).
        self.door = door or ApiDoor.never()
        self.bind = bind
        self.port = port
        self._token = token.encode() if token else None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; OSError when the address is taken. ``port`` is then the bound port."""
        app = web.Application(
            middlewares=[self._problems, self._authorize], client_max_size=MAX_BODY_BYTES
        )
        routes = {
            ("get", "/v1/calls"): self._list,
            ("post", "/v1/calls"): self._place,
            ("get", "/v1/calls/{call_id}"): self._get,
            ("post", "/v1/calls/{call_id}/hangup"): self._hangup,
            ("post", "/v1/calls/{call_id}/transfer"): self._transfer,
            ("post", "/v1/calls/{call_id}/say"): self._say,
            ("post", "/v1/calls/{call_id}/dtmf"): self._dtmf,
            ("get", "/v1/openapi.json"): self._openapi,
        }
        for method, path, *_ in openapi.OPERATIONS:
            app.router.add_route(method.upper(), path, routes[method, path])
        if self.extension is not None:
            self.extension.add_routes(app, routes)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.bind, self.port, reuse_address=True)
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("api.listening", bind=self.bind, port=self.port, token=self._token is not None)

    async def close(self) -> None:
        if self.extension is not None:
            self.extension.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- middleware -----------------------------------------------------------------------------

    @web.middleware
    async def _problems(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every refusal as a problem document, aiohttp's own (404, 405, 413) included."""
        try:
            return await handler(request)
        except Problem as exc:
            return problem_response(exc.status, exc.detail, **exc.extra)
        except web.HTTPRequestEntityTooLarge:
            return problem_response(413, f"a request body is at most {MAX_BODY_BYTES} bytes")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return problem_response(exc.status, exc.reason, headers)

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if (shut := self.door.shut(request)) is not None:
            return shut
        ext = self.extension
        if ext is not None and (request.path + "/").startswith(ext.prefix + "/"):
            return await ext.authorize(request, handler)
        if self._token is None:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token):
            return await handler(request)
        self.door.refused(request, "api.unauthorized")
        return problem_response(
            401,
            "this API needs the bearer token: Authorization: Bearer TOKEN",
            {"WWW-Authenticate": 'Bearer realm="sip-realtime-gateway"'},
        )

    # --- routes ---------------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": self.controls.calls()})

    async def _place(self, request: web.Request) -> web.Response:
        body = await _body(request, PlaceCallRequest)
        call_id, sip_call_id = self.controls.place_call(body)
        log.info("api.call", call_id=call_id, to=body.to, source=request.remote)
        return web.json_response({"id": call_id, "sip_call_id": sip_call_id}, status=202)

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self.controls.call(request.match_info["call_id"]))

    async def _hangup(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        self.controls.hang_up(call_id)
        log.info("api.hangup", call_id=call_id, source=request.remote)
        return web.json_response({"detail": "hanging up"}, status=202)

    async def _transfer(self, request: web.Request) -> web.Response:
        body = await _body(request, TransferRequest)
        call_id = request.match_info["call_id"]
        log.info(
            "api.transfer",
            call_id=call_id,
            target=body.target,
            mode=body.mode,
            source=request.remote,
        )
        summary = sanitise(body.summary, MAX_SUMMARY_CHARS)
        detail = await self.controls.transfer(call_id, body.target, body.mode, summary)
        return web.json_response({"detail": detail})

    async def _say(self, request: web.Request) -> web.Response:
        body = await _body(request, SayRequest)
        call_id = request.match_info["call_id"]
        self.controls.say(call_id, body.text, body.mode)
        log.info("api.say", call_id=call_id, mode=body.mode, chars=len(body.text))
        return web.json_response({"detail": "said" if body.mode == "speak" else "told"}, status=202)

    async def _dtmf(self, request: web.Request) -> web.Response:
        body = await _body(request, DtmfRequest)
        call_id = request.match_info["call_id"]
        self.controls.send_keys(call_id, body.digits)
        log.info("api.dtmf", call_id=call_id, keys=len(body.digits))
        return web.json_response({"detail": "sending"}, status=202)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document(__version__))


async def _body(request: web.Request, model: type[Model]) -> Model:
    """The request's JSON body as `model`, or a 400 problem saying what is wrong."""
    if request.content_type != "application/json":
        raise Problem(400, "send the body as application/json")
    try:
        data: Any = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Problem(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Problem(400, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "problem": e["msg"]}
            for e in exc.errors(include_input=False, include_url=False)[:10]
        ]
        raise Problem(400, "the body does not fit this request", errors=errors) from None
