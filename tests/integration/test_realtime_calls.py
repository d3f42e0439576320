"""What a PBX sees for every way of connecting the Realtime service, and for its failures.

SIPp calls the gateway (a subprocess, as users run it); the Realtime service is the embedded
agent on loopback, run by the test, which can refuse a handshake, drop a session mid-call or end
sessions at a short limit. Every client event the gateway sent it is validated strictly against
the SDK's models for the dialect of that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.agent import CHIME_TRANSCRIPT, EmbeddedRealtimeServer

from .gateway_proc import GatewayProcess
from .managed_identity import LoopbackManagedIdentity
from .peers import LOOPBACK, Sipp, free_port_block, free_udp_port
from .scenarios import call_until_bye, invite_expecting
from .test_realtime_link import assert_valid_client_events, items

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
]

PREVIEW = {"protocol": "preview", "api_version": "2025-04-01-preview"}
KEY_ENV = "GW_TEST_REALTIME_KEY"
GREETING = {"agent": {"greeting": "Greet the caller.", "input_transcription": {}}}
# The test service on loopback has no TLS: a key or token over ws:// must be allowed.
INSECURE_WS = {"allow_insecure_ws": True}


def sipp(workdir: Path, scenario: Path, gateway: GatewayProcess) -> Sipp:
    return Sipp(
        workdir,
        [
            "-sf", scenario, "-m", 1, "-i", LOOPBACK, "-p", free_udp_port(),
            "-mp", free_port_block(4), "-timeout", "40", "-timeout_error",
            f"{LOOPBACK}:{gateway.port}",
        ],
        name=scenario.stem,
    )  # fmt: skip


async def expect_sipp_ok(caller: Sipp, gateway: GatewayProcess, timeout: float = 45) -> None:
    code = await caller.wait(timeout=timeout)
    assert code == 0, f"SIPp failed:\n{caller.report()}\n{gateway.tail()}"


async def rejected_call(tmp_path: Path, gateway: GatewayProcess, **kwargs: Any) -> dict[str, Any]:
    """An INVITE that must get 503 (kwargs: header checks); returns the call.rejected log."""
    scenario = invite_expecting(tmp_path / "refused.xml", 503, **kwargs)
    caller = sipp(tmp_path, scenario, gateway)
    await caller.start()
    await expect_sipp_ok(caller, gateway)
    rejected = await gateway.wait_for("call.rejected", timeout=10)
    assert rejected["status"] == 503 and rejected["level"] == "error"
    assert not gateway.find("call.answered")
    return rejected


@contextlib.asynccontextmanager
async def answered_call(
    tmp_path: Path, gateway: GatewayProcess, service: EmbeddedRealtimeServer
) -> AsyncIterator[Sipp]:
    """A call that is answered; the body acts on it; the gateway must then end it with BYE."""
    caller = sipp(tmp_path, call_until_bye(tmp_path / "call.xml"), gateway)
    await caller.start()
    try:
        await gateway.wait_for("call.answered", timeout=20)
        yield caller
        await expect_sipp_ok(caller, gateway)
    finally:
        await caller.stop()
    assert_valid_client_events(service)


def key_env(key: str) -> dict[str, str | None]:
    return {KEY_ENV: key}


# --- every way of connecting ------------------------------------------------------------------


@pytest.mark.parametrize("way", ["azure-ga-api-key", "azure-preview-api-key", "openai-bearer"])
async def test_call_is_answered_for_each_dialect(tmp_path: Path, way: str) -> None:
    key = "k3y-" + way
    async with EmbeddedRealtimeServer(api_key=key, burst_speed=20.0) as service:
        auth = {"method": "bearer" if way == "openai-bearer" else "api_key", "api_key_env": KEY_ENV}
        realtime: dict[str, Any] = {"url": service.url, "auth": auth, **INSECURE_WS}
        if way == "azure-preview-api-key":
            realtime |= {"url": service.preview_url, **PREVIEW}
        elif way == "openai-bearer":
            realtime["url"] = service.url.replace("/openai/v1/realtime", "/v1/realtime")
        config = {"realtime": realtime, **GREETING}
        async with GatewayProcess(tmp_path, config, env=key_env(key)) as gateway:
            async with answered_call(tmp_path, gateway, service):
                # The greeting was asked for and answered in this dialect.
                await gateway.wait_for("realtime.response_done", timeout=15)
                await service.sessions[0].drop(1000, "done")
            ended = await gateway.wait_for("call.ended", timeout=10)
        assert ended["reason"] == "realtime_closed:1000"
        session = service.sessions[0]
        assert session.dialect == ("preview" if "preview" in way else "ga")
        headers = session.headers
        if way == "openai-bearer":
            assert headers["Authorization"] == f"Bearer {key}" and "api-key" not in headers
        else:
            assert headers["api-key"] == key and "Authorization" not in headers
        assert ("OpenAI-Beta" in headers) == (way == "azure-preview-api-key")
        assert key not in "\n".join(gateway.raw)


async def test_call_with_entra_id_from_managed_identity(tmp_path: Path) -> None:
    async with LoopbackManagedIdentity(token="entra-token-for-this-test") as identity:
        async with EmbeddedRealtimeServer(api_key=identity.token) as service:
            realtime = {"url": service.url, "auth": {"method": "entra"}, **INSECURE_WS}
            config = {"realtime": realtime}
            async with GatewayProcess(tmp_path, config, env=identity.env_changes()) as gateway:
                async with answered_call(tmp_path, gateway, service):
                    await service.sessions[0].drop(1000, "done")
            assert len(identity.requests) == 1
            assert identity.requests[0].resource == "https://cognitiveservices.azure.com"
            assert service.sessions[0].headers["Authorization"] == f"Bearer {identity.token}"


# --- handshake failures before answering ----------------------------------------------------


async def test_bad_api_key_gets_503_naming_the_key_but_not_its_value(tmp_path: Path) -> None:
    secret = "sk-secret-value-that-must-never-be-logged"
    async with EmbeddedRealtimeServer(api_key="the-right-key") as service:
        config = {"realtime": {"url": service.url, "auth": {"api_key_env": KEY_ENV}, **INSECURE_WS}}
        async with GatewayProcess(tmp_path, config, env=key_env(secret)) as gateway:
            rejected = await rejected_call(tmp_path, gateway)
    assert rejected["http_status"] == 401
    assert f"the API key in ${KEY_ENV} was refused" in rejected["reason"]
    assert secret not in "\n".join(gateway.raw)
    assert secret not in (tmp_path / "gateway.log").read_text()


async def test_missing_role_gets_503_naming_the_role(tmp_path: Path) -> None:
    async with LoopbackManagedIdentity() as identity:
        async with EmbeddedRealtimeServer(refuse_status=403) as service:
            realtime = {"url": service.url, "auth": {"method": "entra"}, **INSECURE_WS}
            config = {"realtime": realtime}
            async with GatewayProcess(tmp_path, config, env=identity.env_changes()) as gateway:
                rejected = await rejected_call(tmp_path, gateway)
    assert rejected["http_status"] == 403
    assert "missing role" in rejected["reason"] and "OpenAI User" in rejected["reason"]
    assert all(token not in "\n".join(gateway.raw) for token in identity.tokens)


async def test_unknown_deployment_gets_503_deployment_not_found(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer(refuse_status=404) as service:
        config = {
            "realtime": {"url": service.url, "deployment": "gpt-typo", "auth": {"method": "none"}}
        }
        async with GatewayProcess(tmp_path, config) as gateway:
            rejected = await rejected_call(tmp_path, gateway)
    assert rejected["http_status"] == 404
    assert "deployment 'gpt-typo' not found" in rejected["reason"]


async def test_connect_timeout_gets_503(tmp_path: Path) -> None:
    """The service accepts TCP and never answers the WebSocket upgrade."""
    accepted = asyncio.Event()

    def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()  # and never answer

    silent = await asyncio.start_server(hold, LOOPBACK, 0)
    url = f"ws://{LOOPBACK}:{silent.sockets[0].getsockname()[1]}/openai/v1/realtime"
    config = {"realtime": {"url": url, "auth": {"method": "none"}, "connect_timeout_s": 1.5}}
    try:
        async with GatewayProcess(tmp_path, config) as gateway:
            rejected = await rejected_call(tmp_path, gateway)
    finally:
        silent.close()
    assert accepted.is_set()
    assert rejected["reason"] == "no session within 1.5 s (connect timeout)"
    assert rejected["http_status"] is None


# --- after the call is up ---------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["ga", "preview"])
async def test_dropped_session_is_replaced_and_the_call_goes_on(
    tmp_path: Path, dialect: str
) -> None:
    async with EmbeddedRealtimeServer(burst_speed=20.0) as service:
        realtime: dict[str, Any] = {"url": service.url, "auth": {"method": "none"}}
        if dialect == "preview":
            realtime |= {"url": service.preview_url, **PREVIEW}
        config = {"realtime": realtime, **GREETING}
        async with GatewayProcess(tmp_path, config) as gateway:
            async with answered_call(tmp_path, gateway, service):
                await gateway.wait_for(
                    "call.transcript", timeout=15, where=lambda e: e["text"] == CHIME_TRANSCRIPT
                )
                await service.sessions[0].drop(1011)
                reconnected = await gateway.wait_for("realtime.reconnected", timeout=10)
                assert reconnected["code"] == 1011 and reconnected["replayed_items"] == 1
                await service.sessions[1].drop(1000, "done")
            ended = await gateway.wait_for("call.ended", timeout=10)
        assert ended["reason"] == "realtime_closed:1000"
        assert items(service.sessions[1]) == [("assistant", CHIME_TRANSCRIPT)]
        assert service.sessions[1].received[0]["type"] == "session.update"
        assert not gateway.find("realtime.reconnect_failed")


async def test_failed_reconnect_hangs_up_cleanly(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as service:
        config = {"realtime": {"url": service.url, "auth": {"method": "none"}}}
        async with GatewayProcess(tmp_path, config) as gateway:
            async with answered_call(tmp_path, gateway, service):
                service.refuse_status = 503
                await service.sessions[0].drop(1011)
                failed = await gateway.wait_for("realtime.reconnect_failed", timeout=10)
            ended = await gateway.wait_for("call.ended", timeout=10)
    assert failed["code"] == 1011 and "HTTP 503" in failed["reason"]
    assert ended["reason"] == "realtime_closed:1011"


async def test_call_outlives_the_session_limit(tmp_path: Path) -> None:
    """Sessions end after 4 s here; the call rolls over before each limit and stays up."""
    async with EmbeddedRealtimeServer(burst_speed=20.0, max_session_s=4) as service:
        config = {
            "realtime": {"url": service.url, "auth": {"method": "none"}, "rollover_margin_s": 3},
            **GREETING,
        }
        async with GatewayProcess(tmp_path, config) as gateway:
            async with answered_call(tmp_path, gateway, service):
                await gateway.wait_for(
                    "realtime.rolled_over", timeout=15, where=lambda e: e["forced"] is False
                )
                current = service.sessions[-1]
                await current.drop(1000, "done")
            ended = await gateway.wait_for("call.ended", timeout=10)
        assert ended["reason"] == "realtime_closed:1000"
        assert not gateway.find("realtime.reconnected")
        replaced = [s for s in service.sessions if s is not current]
        assert replaced and all(s.close_code == 1000 for s in replaced)
