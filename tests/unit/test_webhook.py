"""A webhook tool against a hostile service, DNS or config, through real loopback sockets.

127.0.0.1 is the webhook service, 127.0.0.2 a third party that must receive nothing. Every
refusal is an error answer for the model; the call goes on.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import socket
import sys
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gateway.bridge.tools import MAX_OUTPUT_CHARS, ToolCall, Tools
from gateway.bridge.webhook import MAX_RESPONSE_BYTES, PublicOnlyResolver, WebhookError
from gateway.config import ConfigError, WebhookTool, parse_config
from gateway.destinations import non_public_kind


class Control:
    def hang_up_after_playback(self) -> None:
        raise AssertionError("no webhook hangs up")

    async def transfer(self, target: str) -> tuple[bool, str]:
        raise AssertionError("no webhook transfers")


class Recorder:
    """An HTTP server that answers each request with a handler and records what it received."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.answer: web.Response = web.json_response({"ok": True})
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        return self.answer

    async def __aenter__(self) -> Recorder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://{self.host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def service() -> AsyncIterator[Recorder]:
    async with Recorder("127.0.0.1") as server:
        yield server


@pytest.fixture
async def third_party() -> AsyncIterator[Recorder]:
    async with Recorder("127.0.0.2") as server:
        yield server


def webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "webhook",
        "name": "lookup",
        "description": "Look something up.",
        "url": url,
        "timeout_s": 5,
        **extra,
    }


def tools_with(tool: dict[str, Any], **env: str) -> Tools:
    agent = parse_config({"agent": {"tools": [tool]}}).agent
    return Tools(agent.tools, {"caller": "+15550100"}, environ=env)


async def call(tools: Tools) -> dict[str, Any]:
    try:
        answer = json.loads(await tools.run(ToolCall("c", "lookup", "{}"), Control()))
    finally:
        await tools.close()
    assert isinstance(answer, dict)
    return answer


# --- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed(service, third_party, status) -> None:
    """The service redirects to a third party: the third party hears nothing (not the call
    data, not the secret header) and the model hears that the service redirected."""
    service.answer = web.Response(status=status, headers={"Location": f"{third_party.base}/steal"})
    tools = tools_with(
        webhook(
            f"{service.base}/hook",
            headers_from_env={"Authorization": "CRM_TOKEN"},
            allow_private_addresses=True,
            allow_insecure_http=True,
        ),
        CRM_TOKEN="Bearer s3cret",
    )
    answer = await call(tools)
    assert answer == {
        "ok": False,
        "error": f"the service answered a redirect (HTTP {status}); redirects are not followed",
    }
    assert [r[:2] for r in service.requests] == [("POST", "/hook")]
    assert third_party.requests == []


# --- failures the model must hear about ------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 404, 410, 429, 500, 502, 503])
async def test_an_http_error_status_is_an_error_not_a_result(service, status) -> None:
    """A 404 (or any 4xx/5xx) with a JSON body that looks like an answer is still a failure:
    the model must not read "not found" pages, or a proxy's error, as the tool's result."""
    service.answer = web.json_response({"ok": True, "status": "shipped"}, status=status)
    answer = await call(tools_with(webhook(f"{service.base}/h", allow_private_addresses=True)))
    assert answer == {"ok": False, "error": f"the service answered HTTP {status}"}
    assert len(service.requests) == 1


async def test_a_service_that_refuses_the_connection_is_an_error_for_the_model() -> None:
    """Nothing listens on the port (a socket bound there, so no one else can, that never
    listens: the kernel answers the SYN with a reset): the model gets an answer saying so,
    at once, not an exception and not a wait for the timeout."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        tools = tools_with(webhook(f"http://127.0.0.1:{port}/h", allow_private_addresses=True))
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(4):  # the tool's timeout_s is 5
            answer = await call(tools)
        assert answer == {
            "ok": False,
            "error": "the service could not be reached (ClientConnectorError)",
        }
        assert loop.time() - started < 2
    finally:
        holder.close()


# --- the body -------------------------------------------------------------------------------

BODY_SERVER = r"""
import socket, sys
size, declared = int(sys.argv[1]), sys.argv[2] == "declared"
server = socket.create_server(("127.0.0.1", 0))
server.settimeout(20)
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
conn.settimeout(20)
request = b""
while b"\r\n\r\n" not in request:
    data = conn.recv(65536)
    if not data:
        break
    request += data
head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
if declared:
    head += b"Content-Length: %d\r\n" % size
chunk = b"7" * 65536
sent = 0
try:
    conn.sendall(head + b"\r\n")
    while sent < size:
        conn.sendall(chunk)
        sent += len(chunk)
except OSError:
    pass
print(sent, flush=True)
conn.close()
"""


@pytest.mark.parametrize("declared", ["declared", "undeclared"])
async def test_a_huge_body_is_not_read(declared: str) -> None:
    """A 10 MiB answer (its length declared, or not): the tool answers an error once it has
    read 64 KiB, and this process never holds the body (the server runs in its own process,
    so what tracemalloc sees here is the client's)."""
    size = 10 * 1024 * 1024
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BODY_SERVER, str(size), declared, stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    try:
        port = int(await asyncio.wait_for(server.stdout.readline(), 10))
        tools = tools_with(webhook(f"http://127.0.0.1:{port}/hook", allow_private_addresses=True))
        tracemalloc.start()
        try:
            answer = await call(tools)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        sent = int(await asyncio.wait_for(server.stdout.readline(), 25))
        assert await asyncio.wait_for(server.wait(), 10) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    assert answer == {"ok": False, "error": "the service answered more than 64 KiB"}
    assert peak < 2 * 1024 * 1024, f"the client held {peak / 1e6:.1f} MB"
    assert sent < size, "the client read the whole body"
    print(f"\npeak {peak / 1024:.0f} KiB, the server got {sent / 1024:.0f} KiB out")


async def test_a_body_of_exactly_the_cap_is_read(service) -> None:
    """64 KiB is accepted (what reaches the model is then cut to 16,000 characters, and is
    still JSON)."""
    service.answer = web.Response(text="x" * MAX_RESPONSE_BYTES)
    tools = tools_with(webhook(f"{service.base}/h", allow_private_addresses=True))
    try:
        out = await tools.run(ToolCall("c", "lookup", "{}"), Control())
    finally:
        await tools.close()
    assert len(out) <= MAX_OUTPUT_CHARS
    answer = json.loads(out)
    assert answer["truncated"] is True
    assert answer["result"] == "x" * len(answer["result"]) and len(answer["result"]) > 15_000


async def test_a_long_json_answer_is_cut_to_valid_json(service) -> None:
    """A JSON answer over the cap, full of characters JSON must escape, still reaches the
    model as JSON within the cap, holding the start of the answer."""
    long = json.dumps({"rows": ['"quoted"\n' * 50] * 100})
    service.answer = web.Response(text=long, content_type="application/json")
    tools = tools_with(webhook(f"{service.base}/h", allow_private_addresses=True))
    try:
        out = await tools.run(ToolCall("c", "lookup", "{}"), Control())
    finally:
        await tools.close()
    assert len(long) > MAX_OUTPUT_CHARS >= len(out)
    answer = json.loads(out)
    assert answer["truncated"] is True and long.startswith(answer["result"])


async def test_a_body_that_is_not_utf8_is_an_error(service) -> None:
    service.answer = web.Response(
        body='{"name": "José"}'.encode("latin-1"), content_type="application/json"
    )
    answer = await call(tools_with(webhook(f"{service.base}/h", allow_private_addresses=True)))
    assert answer == {"ok": False, "error": "the service answered a body that is not UTF-8 text"}


async def test_a_compressed_body_is_refused(service) -> None:
    """A gzip answer (a bomb would be 1000 times its size unpacked) is never unpacked."""
    service.answer = web.Response(
        body=gzip.compress(b'{"status": "shipped"}' + b" " * 1_000_000),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    answer = await call(tools_with(webhook(f"{service.base}/h", allow_private_addresses=True)))
    assert answer == {"ok": False, "error": "the service answered a compressed body"}
    assert service.requests[0][2]["Accept-Encoding"] == "identity"


# --- destinations ---------------------------------------------------------------------------


async def test_a_name_that_resolves_to_loopback_is_refused(service) -> None:
    """localhost (a name, so the config cannot know) resolves to 127.0.0.1: refused, and the
    service there receives nothing."""
    port = service.base.rsplit(":", 1)[1]
    answer = await call(tools_with(webhook(f"http://localhost:{port}/hook")))
    assert answer == {
        "ok": False,
        "error": "localhost resolves to a loopback address, which is not allowed",
    }
    assert service.requests == []


async def test_allow_private_addresses_lets_a_name_reach_loopback(service) -> None:
    port = service.base.rsplit(":", 1)[1]
    url = f"http://localhost:{port}/hook"
    answer = await call(tools_with(webhook(url, allow_private_addresses=True)))
    assert answer == {"ok": True}
    assert [r[:2] for r in service.requests] == [("POST", "/hook")]


async def test_a_loopback_address_is_refused_at_run_time_too(service) -> None:
    """The config refuses it (below); should a tool reach the bridge unvalidated, the
    client refuses it as well, before any connection."""
    allowed = parse_config(
        {"agent": {"tools": [webhook(f"{service.base}/h", allow_private_addresses=True)]}}
    )
    [tool] = allowed.agent.tools
    assert isinstance(tool, WebhookTool)
    unchecked = tool.model_copy(update={"allow_private_addresses": False})
    tools = Tools([unchecked], {}, environ={})
    answer = await call(tools)
    assert answer == {"ok": False, "error": "127.0.0.1 is a loopback address, which is not allowed"}
    assert service.requests == []


async def test_the_resolver_refuses_a_name_with_a_private_address() -> None:
    with pytest.raises(WebhookError, match="loopback"):
        await PublicOnlyResolver().resolve("localhost", 80, family=0)


@pytest.mark.parametrize(
    "url,kind",
    [
        ("http://127.0.0.1:8080/h", "loopback"),
        ("http://127.9.9.9/h", "loopback"),
        ("https://[::1]/h", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1]/h", "link-local"),
        ("http://10.1.2.3/h", "private"),
        ("http://172.16.0.1/h", "private"),
        ("http://192.168.1.10/h", "private"),
        ("https://[fd12::1]/h", "private"),
        ("http://0.0.0.0/h", "unspecified"),
        ("http://224.0.0.1/h", "multicast"),
        ("https://[::ffff:127.0.0.1]/h", "loopback"),
    ],
)
def test_the_config_refuses_a_non_public_address_unless_allowed(url: str, kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"agent": {"tools": [webhook(url)]}}, "gw.yaml")
    [error] = info.value.errors
    assert error.startswith("gw.yaml: agent.tools[0]: url: ")
    assert f"is a {kind} address; set allow_private_addresses: true" in error
    parse_config({"agent": {"tools": [webhook(url, allow_private_addresses=True)]}})


def test_secrets_over_plain_http_are_a_config_error() -> None:
    hook = webhook("http://crm.example/h", headers_from_env={"Authorization": "CRM_TOKEN"})
    with pytest.raises(ConfigError) as info:
        parse_config({"agent": {"tools": [hook]}}, "gw.yaml")
    assert info.value.errors == [
        "gw.yaml: agent.tools[0]: url: an http:// URL would send the headers_from_env secrets "
        "unencrypted; use https://, or set allow_insecure_http: true for this tool"
    ]
    parse_config({"agent": {"tools": [{**hook, "allow_insecure_http": True}]}})
    parse_config({"agent": {"tools": [{**hook, "url": "https://crm.example/h"}]}})
    parse_config({"agent": {"tools": [webhook("http://crm.example/h")]}})  # no secret: allowed


@pytest.mark.parametrize(
    "address,kind",
    [
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("64:ff9b::808:808", None),  # NAT64 of a public address
        ("::ffff:8.8.8.8", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("fe80::1%eth0", "link-local"),
    ],
)
def test_non_public_kind(address: str, kind: str | None) -> None:
    assert non_public_kind(ipaddress.ip_address(address)) == kind
