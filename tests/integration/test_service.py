"""The gateway as systemd runs it: sd_notify on a real unix datagram socket, signals, draining,
reloading, metrics scraped over HTTP during calls, and logs that never hold a secret."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import aiohttp.web
import pytest

from gateway.agent import EmbeddedRealtimeServer
from tests.audio import speech_wav

from .gateway_proc import GatewayProcess
from .peers import Baresip, missing_peer_tools, udp_port_bound
from .scenarios import answered_call, invite_expecting, options_expecting
from .systemd import NotifySocket
from .test_call_setup import run_sipp

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_peer_tools("baresip", "sipp", "espeak-ng", "sox")),
        reason="needs baresip, sipp, espeak-ng and sox (scripts/install-test-peers.sh)",
    ),
]

RATE = 8000
SENTENCE = "Hello, this call is here to test the service"
TEST_KEY = "sk-test-" + "7f3a9c2e5b1d4f60a8e2c4b6d8f0a1c3"  # only ever given through the env


async def scrape(gateway: GatewayProcess, path: str = "/metrics") -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(gateway.metrics_url + path) as response:
            return response.status, await response.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            have = ",".join(sorted((match[2] or "").split(","))) if match[2] else ""
            if have == want:
                return float(match[3])
    return 0.0


async def test_sigterm_drains_calls_refuses_new_ones_and_exits_0(tmp_path: Path) -> None:
    """READY only once SIP listens; STATUS and metrics follow the calls; SIGTERM: 503 to
    INVITE and OPTIONS, a call that ends by itself is left alone, the one still up at the
    drain timeout gets a BYE, exit 0."""
    drain_timeout = 8.0  # room for the checks below on a loaded 2-core CI machine
    speech_wav(tmp_path / "long.wav", SENTENCE, RATE, 0.5, 40.0)  # only the drain ends it
    config = {"service": {"drain_timeout_s": drain_timeout}}
    async with NotifySocket() as systemd:
        env = {**systemd.env, "WATCHDOG_USEC": "400000"}
        gateway = GatewayProcess(tmp_path, config, env)
        short: asyncio.Task[object] | None = None
        try:
            await gateway.start(wait_ready=False)
            ready = await systemd.wait_for("READY", timeout=20)
            # At READY, SIP already listens (and the embedded agent is up).
            assert udp_port_bound(gateway.port, pid=gateway.pid)
            assert ready["STATUS"] == "0 active calls"
            assert await scrape(gateway, "/readyz") == (200, "ready\n")

            # A long call: answered, its echo answer played (both latency paths measured).
            caller = Baresip(tmp_path / "long", tmp_path / "long.wav", gateway.uri())
            await caller.start()
            first = await gateway.wait_for("call.answered", timeout=20)
            await systemd.wait_for("STATUS", timeout=10, where=lambda m: "1 active" in m["STATUS"])
            await gateway.wait_for("realtime.response_done", timeout=30)
            status, metrics = await scrape(gateway)
            assert status == 200
            assert sample(metrics, "sipgw_active_calls") == 1
            assert sample(metrics, "sipgw_calls_total", outcome="answered", reason="") == 1
            assert sample(metrics, "sipgw_realtime_handshake_seconds_count") == 1
            assert sample(metrics, "sipgw_uplink_latency_seconds_count") > 20
            assert sample(metrics, "sipgw_downlink_latency_seconds_count") >= 1
            assert sample(metrics, "sipgw_pacer_lateness_seconds_count") > 20  # a tick per 20 ms
            assert sample(metrics, "sipgw_realtime_tokens_total", kind="output_audio") > 0

            # A second call that hangs up by itself 3 s after its answer, during the drain.
            short = asyncio.create_task(
                run_sipp(tmp_path, answered_call(tmp_path / "short.xml", 3000), gateway)
            )
            second = await gateway.wait_for(
                "call.answered", timeout=20, where=lambda e: e["call_id"] != first["call_id"]
            )
            gateway.send_signal(signal.SIGTERM)
            stopping = await systemd.wait_for("STOPPING", timeout=10)
            assert stopping["STATUS"] == "draining: 2 active calls"
            assert int(stopping["EXTEND_TIMEOUT_USEC"]) >= drain_timeout * 1e6
            await gateway.wait_for("gateway.draining", timeout=10)
            assert (await scrape(gateway, "/readyz"))[0] == 503
            assert (await scrape(gateway, "/healthz"))[0] == 200

            # New work is refused while draining.
            await run_sipp(tmp_path, invite_expecting(tmp_path / "late.xml", 503), gateway)
            await run_sipp(tmp_path, options_expecting(tmp_path / "probe.xml", 503), gateway)
            await short  # SIPp saw its call through: 200, its own BYE answered 200
            assert await gateway.wait_exit(timeout=drain_timeout + 15) == 0
            result = await caller.wait(timeout=20)
        finally:
            await gateway.stop()
            await caller.stop()
            if short is not None:
                await asyncio.gather(short, return_exceptions=True)

    ended = {e["call_id"]: e for e in gateway.find("call.ended")}
    assert ended[second["call_id"]]["reason"] == "caller_bye"
    assert ended[first["call_id"]]["reason"] == "drain_timeout"
    # The RTP counts that tell one-way audio apart: baresip sent audio, SIPp none.
    assert ended[first["call_id"]]["rtp_in"] > 100 and ended[first["call_id"]]["rtp_out"] > 100
    assert ended[second["call_id"]]["rtp_in"] == 0 and ended[second["call_id"]]["rtp_out"] > 0
    assert gateway.find("gateway.drain_timeout")[0]["active_calls"] == 1
    refused = gateway.find("call.rejected", status=503)
    assert [r["reason"] for r in refused] == ["the gateway is stopping"]
    assert not gateway.find("call.received", sip_call_id=refused[0]["sip_call_id"])
    # The long call was hung up by the gateway (a BYE), not by the caller.
    assert result.established and result.call_ended, result.describe()
    assert "Connection reset by peer" in (result.close_reason or ""), result.describe()
    assert len(systemd.with_key("WATCHDOG")) >= 3
    assert systemd.with_key("STATUS")[-1]["STATUS"] == "draining: 0 active calls"


async def test_sighup_reloads_agent_profiles_and_routes_for_new_calls_only(
    tmp_path: Path,
) -> None:
    speech_wav(tmp_path / "long.wav", SENTENCE, RATE, 0.5, 40.0)
    async with EmbeddedRealtimeServer() as service, NotifySocket() as systemd:
        config = {
            "realtime": {"url": service.url, "auth": {"method": "none"}},
            "agent": {"voice": "alloy"},
        }
        gateway = GatewayProcess(tmp_path, config, systemd.env)
        caller = Baresip(tmp_path / "long", tmp_path / "long.wav", gateway.uri())
        try:
            await gateway.start()
            await caller.start()
            first = await gateway.wait_for("call.answered", timeout=20)
            assert service.sessions[0].config["audio"]["output"]["voice"] == "alloy"

            # An invalid file: rejected, logged with the field, the old config stays.
            gateway.write_config({"agent": {"voice": "robot"}})
            gateway.send_signal(signal.SIGHUP)
            failed = await gateway.wait_for("config.reload_failed", timeout=10)
            assert any("agent.voice" in line for line in failed["errors"]), failed
            await run_sipp(tmp_path, answered_call(tmp_path / "b.xml", 200), gateway)
            assert service.sessions[1].config["audio"]["output"]["voice"] == "alloy"

            # A valid one: agent, profiles and routes apply to the next call; sip needs a restart.
            mark = len(systemd.messages)
            gateway.write_config(
                {
                    "agent": {"voice": "ash"},
                    "profiles": {"vip": {"voice": "coral"}},
                    "routes": [{"match": {"dialed": "^service$"}, "profile": "vip"}],
                    "sip": {"max_calls": 7},
                }
            )
            gateway.send_signal(signal.SIGHUP)
            reloaded = await gateway.wait_for("config.reloaded", timeout=10)
            assert reloaded["applied"] == ["agent", "profiles", "routes"]
            assert reloaded["needs_restart"] == ["sip"]
            await systemd.wait_for("RELOADING", timeout=5, after=mark)
            await systemd.wait_for("READY", timeout=5, after=mark)
            # SIPp dials sip:service@...: the new route sends it to the vip profile.
            await run_sipp(tmp_path, answered_call(tmp_path / "c.xml", 200), gateway)
            assert service.sessions[2].config["audio"]["output"]["voice"] == "coral"
            assert gateway.find("call.routed", profile="vip")

            # The first call was never touched: same session, still up, until its caller hangs up.
            assert not service.sessions[0].closed
            assert not gateway.find("call.ended", call_id=first["call_id"])
            status, metrics = await scrape(gateway)
            assert status == 200
            assert sample(metrics, "sipgw_config_reloads_total", result="rejected") == 1
            assert sample(metrics, "sipgw_config_reloads_total", result="ok") == 1
            await caller.stop()
            ended = await gateway.wait_for(
                "call.ended", timeout=15, where=lambda e: e["call_id"] == first["call_id"]
            )
            assert ended["reason"] == "caller_bye"
        finally:
            await caller.stop()
            assert await gateway.stop() == 0


async def test_a_whole_call_never_logs_the_api_key(tmp_path: Path) -> None:
    speech_wav(tmp_path / "speech.wav", SENTENCE, RATE, 0.5, 5.0)
    async with EmbeddedRealtimeServer(api_key=TEST_KEY) as service:
        config = {
            "realtime": {
                "url": service.url,
                "auth": {"method": "api_key", "api_key_env": "SIPGW_TEST_API_KEY"},
                "allow_insecure_ws": True,  # the test service on loopback has no TLS
            }
        }
        env = {"SIPGW_TEST_API_KEY": TEST_KEY}
        async with GatewayProcess(tmp_path, config, env) as gateway:
            caller = Baresip(tmp_path / "caller", tmp_path / "speech.wav", gateway.uri())
            result = (await caller.run(timeout=60)).check()
            ended = await gateway.wait_for("call.ended", timeout=15)
            _, metrics = await scrape(gateway)
        # The key did its job: the service accepted it and the caller heard the echo.
        assert ended["reason"] == "caller_bye"
        assert gateway.find("realtime.response_done")
        assert result.rtp_packets_received

    log_text = gateway.log_path.read_text()
    assert "call.transcript" in log_text or "realtime.session_open" in log_text
    for where, text in (("gateway log", log_text), ("metrics", metrics)):
        assert TEST_KEY not in text, f"the API key appears in the {where}"
        assert TEST_KEY[8:24] not in text, f"part of the API key appears in the {where}"
    # Every line of the call carries both ids.
    call_lines = [e for e in gateway.events if "call_id" in e or "sip_call_id" in e]
    assert len(call_lines) >= 4
    for event in call_lines:
        assert event.get("call_id") == ended["call_id"], event
        assert event.get("sip_call_id") == ended["sip_call_id"], event


async def test_not_ready_and_exit_1_when_the_api_key_is_missing(tmp_path: Path) -> None:
    config = {
        "realtime": {
            "url": "wss://example.openai.azure.com/openai/v1/realtime",
            "auth": {"method": "api_key", "api_key_env": "SIPGW_TEST_MISSING_KEY"},
        }
    }
    async with NotifySocket() as systemd:
        gateway = GatewayProcess(tmp_path, config, {**systemd.env, "SIPGW_TEST_MISSING_KEY": None})
        await gateway.start(wait_ready=False)
        assert await gateway.wait_exit(timeout=20) == 1
    assert "SIPGW_TEST_MISSING_KEY is not set" in gateway.tail()
    assert not systemd.with_key("READY")
    assert not gateway.find("gateway.ready")


async def test_an_api_key_over_ws_is_a_config_error_and_never_sent(tmp_path: Path) -> None:
    """realtime.url ws:// with an API key (no allow_insecure_ws): the gateway does not start,
    and the service on that URL never sees a connection, let alone the key."""
    async with EmbeddedRealtimeServer(api_key=TEST_KEY) as service:
        config = {
            "realtime": {
                "url": service.url,
                "auth": {"method": "api_key", "api_key_env": "SIPGW_TEST_API_KEY"},
            }
        }
        gateway = GatewayProcess(tmp_path, config, {"SIPGW_TEST_API_KEY": TEST_KEY})
        await gateway.start(wait_ready=False)
        assert await gateway.wait_exit(timeout=20) == 2
        assert "realtime.url: a ws:// URL would send the API key unencrypted" in gateway.tail()
        assert "allow_insecure_ws" in gateway.tail()
        assert service.sessions == [] and not gateway.find("gateway.ready")


class IdentityEndpoint:
    """A loopback managed-identity endpoint, as azure-identity's ManagedIdentityCredential
    calls it (TESTING.md): GET ?api-version=2019-08-01&resource=... with X-IDENTITY-HEADER."""

    def __init__(self, token: str, status: int = 200) -> None:
        self.token = token
        self.status = status
        self.requests = 0
        self.port = 0
        self._runner: aiohttp.web.AppRunner | None = None

    async def __aenter__(self) -> IdentityEndpoint:
        app = aiohttp.web.Application()
        app.router.add_get("/msi/token", self._token)
        self._runner = aiohttp.web.AppRunner(app)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _token(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.requests += 1
        if request.headers.get("X-IDENTITY-HEADER") != "test-identity-header":
            return aiohttp.web.json_response({"error": "bad header"}, status=401)
        if self.status != 200:
            return aiohttp.web.json_response({"error": "unavailable"}, status=self.status)
        return aiohttp.web.json_response(
            {
                "access_token": self.token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": request.query.get("resource", ""),  # azure-identity reads it
            }
        )

    def env(self) -> dict[str, str | None]:
        """Only managed identity, only on loopback: nothing may reach Azure or start az."""
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("AZURE_")}
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            env[proxy] = None
        env.update(
            {
                "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
                "IDENTITY_ENDPOINT": f"http://127.0.0.1:{self.port}/msi/token",
                "IDENTITY_HEADER": "test-identity-header",
                "NO_PROXY": "*",
                "no_proxy": "*",
            }
        )
        return env


@pytest.mark.parametrize("identity_status", [200, 500])
async def test_entra_ready_only_once_a_token_was_fetched(
    tmp_path: Path, identity_status: int
) -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.test-entra-token"
    async with (
        EmbeddedRealtimeServer(api_key=token) as service,
        IdentityEndpoint(token, identity_status) as identity,
        NotifySocket() as systemd,
    ):
        config = {
            "realtime": {
                "url": service.url,
                "auth": {"method": "entra"},
                "connect_timeout_s": 5,
                "allow_insecure_ws": True,
            }
        }
        gateway = GatewayProcess(tmp_path, config, {**systemd.env, **identity.env()})
        try:
            await gateway.start(wait_ready=False)
            if identity_status != 200:
                assert await gateway.wait_exit(timeout=30) == 1
                assert "realtime.auth.method entra: no token" in gateway.tail()
                assert identity.requests >= 1
                assert not systemd.with_key("READY")
                return
            await systemd.wait_for("READY", timeout=20)
            assert identity.requests >= 1  # the token was fetched before READY=1
            await run_sipp(tmp_path, answered_call(tmp_path / "entra.xml", 200), gateway)
            assert service.sessions[-1].headers["Authorization"] == f"Bearer {token}"
        finally:
            await gateway.stop()
    assert token not in gateway.log_path.read_text()
