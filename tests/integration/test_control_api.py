"""The control API through real sockets: a real gateway process, real calls (SIPp signalling,
a Python RTP phone), HTTP from aiohttp's client, the OpenAPI document checked by an
independent validator, the keys sent to the caller decoded here from the RTP they arrive in."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate

from gateway.agent import EmbeddedRealtimeServer
from gateway.bridge.core import SPEAK

from .gateway_proc import GatewayProcess
from .peers import LOOPBACK, free_udp_port
from .rtp_caller import RtpCaller
from .scenarios import sipp_dial
from .test_features import config as agent_config
from .test_features import sent

pytestmark = pytest.mark.integration

TOKEN = "api-token-for-tests-0123456789"


def api_config(fake: EmbeddedRealtimeServer) -> tuple[int, dict[str, Any]]:
    port = free_udp_port(also_tcp=True)
    cfg = agent_config(fake)
    cfg["api"] = {"bind": LOOPBACK, "port": port, "token_env": "GATEWAY_API_TOKEN"}
    return port, cfg


class Api:
    def __init__(self, port: int, session: aiohttp.ClientSession) -> None:
        self.base = f"http://{LOOPBACK}:{port}"
        self.session = session

    async def request(
        self, method: str, path: str, body: Any = None, token: str | None = TOKEN, **kw: Any
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers, **kw
        ) as response:
            data = await response.read()
            kind = response.headers.get("Content-Type", "")
            parsed = json.loads(data) if "json" in kind else data
            return response.status, dict(response.headers), parsed


def assert_problem(status: int, headers: dict[str, str], body: Any, expected: int) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == expected and body["type"] == "about:blank" and body["title"]


async def test_every_route_wants_the_token_and_every_refusal_is_a_problem(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        port, cfg = api_config(fake)
        env = {"GATEWAY_API_TOKEN": TOKEN}
        async with GatewayProcess(tmp_path, cfg, env=env), aiohttp.ClientSession() as session:
            api = Api(port, session)
            for token in (None, "wrong-token-of-the-same-size-00", TOKEN + "x", ""):
                status, headers, body = await api.request("GET", "/v1/calls", token=token)
                assert_problem(status, headers, body, 401)
                assert headers["WWW-Authenticate"].startswith("Bearer")
            status, headers, body = await api.request("POST", "/v1/calls/abc/hangup", token="nope")
            assert_problem(status, headers, body, 401)  # the token before anything else

            assert (await api.request("GET", "/v1/calls"))[::2] == (200, {"calls": []})
            assert_problem(*await api.request("GET", "/v1/calls/nosuchcall"), 404)
            assert_problem(*await api.request("GET", "/v1/nothing/here"), 404)
            status, headers, body = await api.request("DELETE", "/v1/calls")
            assert_problem(status, headers, body, 405)
            assert "GET" in headers["Allow"]
            assert_problem(*await api.request("POST", "/v1/calls/x/say", {"text": ""}), 400)
            status, headers, body = await api.request(
                "POST", "/v1/calls/x/transfer", {"target": "sip:a@b>\r\nX-Evil: 1"}
            )
            assert_problem(status, headers, body, 400)
            assert body["errors"][0]["field"] == "target"
            assert_problem(*await api.request("POST", "/v1/calls/x/dtmf", {"digits": "12x"}), 400)
            assert_problem(*await api.request("POST", "/v1/calls/x/dtmf", ["1"]), 400)
            status, headers, body = await api.request(
                "POST", "/v1/calls/x/say", data=b"{not json", token=TOKEN
            )
            assert status == 400  # aiohttp sends data= without a JSON type: refused as such
            big = {"text": "a" * 20_000}
            assert_problem(*await api.request("POST", "/v1/calls/x/say", big), 413)
            # Outbound calls without sip.outbound: refused, saying what is missing.
            status, headers, body = await api.request("POST", "/v1/calls", {"to": "+4930123"})
            assert_problem(status, headers, body, 409)
            assert "sip.outbound" in body["detail"]
            # A well-formed request for a call that does not exist.
            assert_problem(*await api.request("POST", "/v1/calls/x/say", {"text": "hi"}), 404)


async def test_the_openapi_document_is_valid_and_names_exactly_the_routes(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        port, cfg = api_config(fake)
        env = {"GATEWAY_API_TOKEN": TOKEN}
        async with GatewayProcess(tmp_path, cfg, env=env), aiohttp.ClientSession() as session:
            api = Api(port, session)
            status, _, document = await api.request("GET", "/v1/openapi.json")
            assert status == 200
            validate(document)  # OpenAPI 3.1, by openapi-spec-validator
            assert document["openapi"].startswith("3.1")
            documented = {
                (method.upper(), path)
                for path, operations in document["paths"].items()
                for method in operations
            }
            assert len(documented) == 8
            for method, path in documented:  # each one is served (no 404/405 for the route)
                status, _, body = await api.request(
                    method, path.replace("{call_id}", "nosuchcall"), {}
                )
                assert status not in (405,), (method, path, body)
                assert status != 404 or body["detail"] == "no call in progress has this id"
            for method, path in [("PUT", "/v1/calls"), ("GET", "/v1/calls/x/hangup")]:
                assert (await api.request(method, path))[0] == 405


async def test_a_live_call_is_listed_keyed_spoken_to_and_hung_up(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        port, cfg = api_config(fake)
        env = {"GATEWAY_API_TOKEN": TOKEN}
        async with (
            GatewayProcess(tmp_path, cfg, env=env) as gateway,
            aiohttp.ClientSession() as session,
        ):
            api = Api(port, session)
            sipp = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, timeout_ms=30_000)
            async with sipp:
                answered = await gateway.wait_for("call.answered", timeout=20)
                await phone.wait_until(lambda: bool(phone.heard), 15, "the first packet")
                status, _, listing = await api.request("GET", "/v1/calls")
                [call] = listing["calls"]
                assert status == 200 and call["id"] == answered["call_id"]
                assert call["state"] == "answered" and call["dialed"] == "agent"
                assert call["codec"] == "PCMU" and call["answered_at"]
                status, _, one = await api.request("GET", f"/v1/calls/{call['id']}")
                assert status == 200 and one["sip_call_id"] == call["sip_call_id"]

                # Keys toward the caller, as RFC 4733 events on payload type 101.
                status, _, _ = await api.request(
                    "POST", f"/v1/calls/{call['id']}/dtmf", {"digits": "1#"}
                )
                assert status == 202
                await phone.wait_until(lambda: len(ends(phone)) >= 6, 10, "two whole keys")
                events = key_events(phone)
                assert [code for code, _ in events] == [1, 11]
                for _, packets in events:
                    durations = [d for _, end, d, _ in packets if not end]
                    assert durations == [160, 320, 480, 640, 800]
                    assert [end for _, end, _, _ in packets][-3:] == [True] * 3
                    assert [marker for *_, marker in packets] == [True] + [False] * 7

                # Speak: the model is asked to say the text, word for word.
                before = phone.sound_packets
                status, _, _ = await api.request(
                    "POST", f"/v1/calls/{call['id']}/say", {"text": "Your order has shipped."}
                )
                assert status == 202
                await phone.wait_until(lambda: phone.sound_packets > before + 10, 10, "speech")
                created = sent(fake, "response.create")
                assert created[-1]["response"]["instructions"] == SPEAK.format(
                    text="Your order has shipped."
                )
                status, _, _ = await api.request(
                    "POST", f"/v1/calls/{call['id']}/say", {"text": "VIP", "mode": "instruct"}
                )
                assert status == 202

                status, _, _ = await api.request("POST", f"/v1/calls/{call['id']}/hangup")
                assert status == 202
                ended = await gateway.wait_for("call.ended", timeout=10)
                assert await sipp.wait(15) == 0, sipp.report()  # SIPp got our BYE
    assert ended["reason"] == "api_hangup"
    told = [
        e["item"]["content"][0]["text"]
        for e in sent(fake, "conversation.item.create")
        if e["item"].get("role") == "system"
    ]
    assert told == ["VIP"]


def ends(phone: RtpCaller) -> list[Any]:
    return [h for h in phone.heard if h.payload_type == 101 and h.payload[1] & 0x80]


def key_events(phone: RtpCaller) -> list[tuple[int, list[tuple[int, bool, int, bool]]]]:
    """The telephone-events the phone heard, grouped by their start timestamp: (event code,
    [(code, end, duration, marker) per packet])."""
    events: dict[int, list[tuple[int, bool, int, bool]]] = {}
    for heard in phone.heard:
        if heard.payload_type != 101:
            continue
        code, flags, duration = struct.unpack("!BBH", heard.payload)
        events.setdefault(heard.timestamp, []).append(
            (code, bool(flags & 0x80), duration, heard.marker)
        )
    return [(packets[0][0], packets) for packets in events.values()]


@pytest.mark.parametrize("outcome", ["200 OK", "486 Busy Here"])
async def test_a_transfer_asked_by_the_api(tmp_path: Path, outcome: str) -> None:
    async with EmbeddedRealtimeServer() as fake, RtpCaller() as phone:
        port, cfg = api_config(fake)
        env = {"GATEWAY_API_TOKEN": TOKEN}
        async with (
            GatewayProcess(tmp_path, cfg, env=env) as gateway,
            aiohttp.ClientSession() as session,
        ):
            api = Api(port, session)
            sipp = sipp_dial(tmp_path / "sipp", gateway.port, phone.port, transfer_outcome=outcome)
            async with sipp:
                answered = await gateway.wait_for("call.answered", timeout=20)
                status, _, body = await api.request(
                    "POST",
                    f"/v1/calls/{answered['call_id']}/transfer",
                    {"target": "sip:queue@pbx.example"},
                )
                if outcome.startswith("2"):
                    assert status == 200, body
                else:
                    assert_problem(status, {"Content-Type": "application/problem+json"}, body, 502)
                    assert "486 Busy Here" in body["detail"]
                ended = await gateway.wait_for("call.ended", timeout=30)
                assert await sipp.wait(15) == 0, sipp.report()
    assert "Refer-To: <sip:queue@pbx.example>" in sipp.messages_path.read_text()
    assert ended["reason"] == ("transferred" if outcome.startswith("2") else "caller_bye")


async def test_the_gateway_refuses_to_start_without_its_token(tmp_path: Path) -> None:
    async with EmbeddedRealtimeServer() as fake:
        _, cfg = api_config(fake)
        gateway = GatewayProcess(tmp_path, cfg, env={"GATEWAY_API_TOKEN": None})
        with pytest.raises(AssertionError):  # it exits instead of getting ready
            await gateway.start(timeout=20)
        assert await gateway.wait_exit(timeout=20) != 0
        assert "api.token_env" in gateway.tail()


async def test_a_source_that_keeps_guessing_is_shut_out_and_no_longer_logged(
    tmp_path: Path,
) -> None:
    """api.max_failures refusals from one address (wrong tokens, a failed console login) shut
    it out: 429 with Retry-After for everything it sends, the right token included, and not
    one more log line for it; another address (127.0.0.2, a distinct host) is not affected."""
    async with EmbeddedRealtimeServer() as fake:
        port, cfg = api_config(fake)
        cfg["api"] |= {"max_failures": 3, "failure_window_s": 60, "block_s": 90}
        env = {"GATEWAY_API_TOKEN": TOKEN}
        other_host = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with (
            GatewayProcess(tmp_path, cfg, env=env) as gateway,
            aiohttp.ClientSession() as session,
            aiohttp.ClientSession(connector=other_host) as other_session,
        ):
            api, other = Api(port, session), Api(port, other_session)
            for token in ("guess-number-one-0123456789", None):
                assert_problem(*await api.request("GET", "/v1/calls", token=token), 401)
            login = await session.post(
                f"{api.base}/console/login", data={"token": "guess-number-three-0123456"}
            )
            assert login.status == 401  # the third refusal: a failed console login
            for _ in range(20):  # the right token, a console page, more guesses: all shut out
                for token in (TOKEN, "another-guess-0123456789"):
                    status, headers, body = await api.request("GET", "/v1/calls", token=token)
                    assert_problem(status, headers, body, 429)
                    assert headers["Retry-After"] == "90"
            async with session.get(f"{api.base}/console/login") as page:
                assert page.status == 429

            assert (await other.request("GET", "/v1/calls"))[::2] == (200, {"calls": []})
            assert_problem(*await other.request("GET", "/v1/calls", token="x" * 20), 401)
            # The other host's refusal is logged after everything the first one sent.
            await gateway.wait_for(
                "api.unauthorized", timeout=10, where=lambda e: e.get("source") == "127.0.0.2"
            )
            ours = [e for e in gateway.events if e.get("source") == LOOPBACK]
            assert [e["event"] for e in ours] == [
                "api.unauthorized",
                "api.unauthorized",
                "console.login_failed",
                "api.source_blocked",
            ]
            assert ours[-1]["block_s"] == 90 and ours[-1]["failures"] == 3
