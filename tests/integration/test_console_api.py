"""The console's door and files over real HTTP, against a gateway process: the login cookie,
wrong tokens, CSRF refusals, the security headers, the live stream, and the history's files
(with paths a hostile record or request might hold)."""

from __future__ import annotations

import asyncio
import json
import sys
import wave
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from .gateway_proc import REPO, GatewayProcess
from .peers import LOOPBACK, free_udp_port

pytestmark = pytest.mark.integration

TOKEN = "console-token-for-tests-0123456789"


def console_config(tmp_path: Path) -> tuple[int, dict[str, Any]]:
    port = free_udp_port(also_tcp=True)
    records = {}
    for name in ("calls_dir", "transcripts_dir", "recordings_dir"):
        (tmp_path / name).mkdir()
        records[name] = str(tmp_path / name)
    cfg = {
        "api": {"bind": LOOPBACK, "port": port, "token_env": "GATEWAY_API_TOKEN"},
        "records": records,
    }
    return port, cfg


class Client:
    def __init__(self, port: int, session: aiohttp.ClientSession) -> None:
        self.base = f"http://{LOOPBACK}:{port}"
        self.origin = self.base
        self.session = session

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any, bytes]:
        async with self.session.request(
            method, self.base + path, headers=headers or {}, allow_redirects=False, **kw
        ) as response:
            return response.status, response.headers, await response.read()

    async def login(self, token: str, **headers: str) -> tuple[int, Any, bytes]:
        return await self.request(
            "POST", "/console/login", data={"token": token, "user": "Ada <sup>"}, headers=headers
        )


def cookie_of(headers: Any) -> str:
    """The session cookie as a browser would send it back."""
    for value in headers.getall("Set-Cookie"):
        if value.startswith("gw_console="):
            return value.split(";", 1)[0]
    raise AssertionError("no session cookie")


async def test_login_sets_a_scoped_cookie_and_wrong_tokens_get_401(tmp_path: Path) -> None:
    port, cfg = console_config(tmp_path)
    env = {"GATEWAY_API_TOKEN": TOKEN}
    async with GatewayProcess(tmp_path, cfg, env=env) as gateway, aiohttp.ClientSession() as s:
        client = Client(port, s)
        status, headers, _ = await client.request("GET", "/console/")
        assert (status, headers["Location"]) == (303, "/console/login")
        status, headers, body = await client.request("GET", "/console/login")
        assert status == 200 and b'name="token"' in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        for wrong in ("", "nope", TOKEN + "x", TOKEN[:-1]):
            status, headers, body = await client.login(wrong)
            assert status == 401 and b"not the API" in body
            assert "Set-Cookie" not in headers
        await gateway.wait_for("console.login_failed", timeout=5)
        status, headers, _ = await client.request("GET", "/console/events")
        assert status == 401

        status, headers, _ = await client.login(TOKEN)
        assert (status, headers["Location"]) == (303, "/console/")
        cookies = headers.getall("Set-Cookie")
        session = next(c for c in cookies if c.startswith("gw_console="))
        attributes = {a.strip().lower() for a in session.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/console"} <= attributes
        assert TOKEN not in " ".join(cookies)  # a value derived from the token, not the token
        assert any("Ada" in c and "<" not in c for c in cookies)  # the label, cleaned
        cookie = cookie_of(headers)
        status, headers, body = await client.request("GET", "/console/", headers={"Cookie": cookie})
        assert status == 200 and b"Live calls" in body
        assert headers["X-Frame-Options"] == "DENY"
        for name in ("common.js", "list.js", "call.js", "listen.js", "listen-worklet.js"):
            status, headers, _ = await client.request(
                "GET", f"/console/static/{name}", headers={"Cookie": cookie}
            )
            assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        status, _, _ = await client.request(
            "GET", "/console/static/..%2Fserver.py", headers={"Cookie": cookie}
        )
        assert status == 404
        # The cookie is the console's: the API itself still wants the bearer header.
        status, _, _ = await client.request("GET", "/v1/calls", headers={"Cookie": cookie})
        assert status == 401
        status, _, body = await client.request(
            "GET", "/console/v1/calls", headers={"Cookie": cookie}
        )
        assert status == 200 and json.loads(body) == {"calls": []}
        # The bearer header opens the console as well.
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        status, _, _ = await client.request("GET", "/console/history/search", headers=bearer)
        assert status == 200
        await gateway.wait_for("console.login", timeout=5, where=lambda e: e["user"] == "Ada sup")


async def test_cookie_requests_that_change_something_are_refused_across_sites(
    tmp_path: Path,
) -> None:
    port, cfg = console_config(tmp_path)
    env = {"GATEWAY_API_TOKEN": TOKEN}
    async with GatewayProcess(tmp_path, cfg, env=env) as gateway, aiohttp.ClientSession() as s:
        client = Client(port, s)
        cookie = cookie_of((await client.login(TOKEN))[1])
        path = "/console/v1/calls/nosuchcall/hangup"
        status, headers, body = await client.request("POST", path, headers={"Cookie": cookie})
        assert status == 403 and headers["Content-Type"].startswith("application/problem+json")
        assert b"X-Console" in body
        evil = {"Cookie": cookie, "X-Console": "1", "Origin": "http://evil.example"}
        assert (await client.request("POST", path, headers=evil))[0] == 403
        ours = {"Cookie": cookie, "X-Console": "1", "Origin": client.origin}
        assert (await client.request("POST", path, headers=ours))[0] == 404  # past the door
        await gateway.wait_for("console.refused", timeout=5)
        # A login form posted from another site's page is refused too.
        status, headers, _ = await client.login(TOKEN, Origin="http://evil.example")
        assert status == 403 and "Set-Cookie" not in headers
        # A WebSocket with the cookie but no Origin (not a browser's) or another site's.
        for origin in (None, "http://evil.example"):
            ws_headers = {"Cookie": cookie} | ({"Origin": origin} if origin else {})
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(client.base + "/console/v1/calls/abc/listen", headers=ws_headers)
            assert refused.value.status == 403
        # A forged or stale cookie is no cookie.
        forged = {"Cookie": "gw_console=" + "0" * 64, "X-Console": "1"}
        assert (await client.request("POST", path, headers=forged))[0] == 401


async def test_the_live_stream_starts_with_the_calls(tmp_path: Path) -> None:
    port, cfg = console_config(tmp_path)
    env = {"GATEWAY_API_TOKEN": TOKEN}
    async with GatewayProcess(tmp_path, cfg, env=env), aiohttp.ClientSession() as s:
        client = Client(port, s)
        cookie = cookie_of((await client.login(TOKEN))[1])
        async with s.get(client.base + "/console/events", headers={"Cookie": cookie}) as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            first = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
            assert first == b"retry: 1000\n\n"
            message = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
            kind, data = message.decode().strip().split("\n")
            assert kind == "event: stats" and json.loads(data[6:]) == {"calls": []}
        status, _, _ = await client.request(
            "GET", "/console/events?call=../../x", headers={"Cookie": cookie}
        )
        assert status == 400


def write_wav(path: Path, seconds: float = 0.5) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x01\x00" * int(16000 * seconds))


async def test_history_serves_only_files_inside_the_records_folders(tmp_path: Path) -> None:
    port, cfg = console_config(tmp_path)
    calls, recordings = tmp_path / "calls_dir", tmp_path / "recordings_dir"
    transcripts = tmp_path / "transcripts_dir"
    secret = tmp_path / "secret.wav"
    write_wav(secret)
    write_wav(recordings / "20261206T010203Z_good1.wav")
    (transcripts / "good1.jsonl").write_text(
        json.dumps({"type": "turn", "role": "caller", "text": "Where is my order?", "offset_s": 1})
        + "\n{not json\n"
    )
    (calls / "good1.timeline.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    base = {"state": "completed", "callee": "sip:agent@gw", "duration_s": 3.5}
    records = {
        "good1": {"caller": "+4930111", "dialed": "agent", "profile": "sales",
                  "received_at": "2026-12-06T01:02:03.000+00:00",
                  "recording": str(recordings / "20261206T010203Z_good1.wav"),
                  "transcript": str(transcripts / "good1.jsonl")},
        "escape1": {"caller": "+4930222", "dialed": "support", "profile": "default",
                    "received_at": "2026-12-05T23:00:00.000+00:00",
                    "recording": str(recordings / ".." / "secret.wav"),
                    "transcript": "/etc/passwd"},
        "escape2": {"caller": "+4930333", "dialed": "support", "profile": "default",
                    "received_at": "2026-12-05T23:00:00.000+00:00",
                    "recording": str(secret)},
    }  # fmt: skip
    (recordings / "link.wav").symlink_to(secret)
    records["escape3"] = dict(records["escape2"], recording=str(recordings / "link.wav"))
    for call_id, fields in records.items():
        (calls / f"{call_id}.json").write_text(json.dumps(base | fields | {"call_id": call_id}))
    (calls / "running.json").write_text(json.dumps(base | {"state": "in_progress"}))
    env = {"GATEWAY_API_TOKEN": TOKEN}
    async with GatewayProcess(tmp_path, cfg, env=env), aiohttp.ClientSession() as s:
        client = Client(port, s)
        auth = {"Authorization": f"Bearer {TOKEN}"}

        async def get(path: str) -> tuple[int, Any, bytes]:
            return await client.request("GET", path, headers=auth)

        async def found(query: str) -> list[str]:
            status, _, body = await get("/console/history/search" + query)
            assert status == 200, body
            return sorted(c["call_id"] for c in json.loads(body)["calls"])

        assert await found("") == ["escape1", "escape2", "escape3", "good1"]
        assert await found("?caller=0111") == ["good1"]
        assert await found("?dialed=SUPP") == ["escape1", "escape2", "escape3"]
        assert await found("?profile=sales") == ["good1"]
        assert await found("?date=2026-12-06") == ["good1"]
        assert (await get("/console/history/search?date=../../etc"))[0] == 400

        status, _, body = await get("/console/history/calls/good1")
        detail = json.loads(body)
        assert status == 200 and detail["recording"] and detail["timeline"]
        assert [t["text"] for t in detail["turns"]] == ["Where is my order?"]
        status, headers, body = await get("/console/history/calls/good1/recording.wav")
        assert status == 200 and headers["Content-Type"] == "audio/wav"
        assert body[:4] == b"RIFF"
        status, headers, body = await get("/console/history/calls/good1/timeline.svg")
        assert status == 200 and headers["Content-Type"] == "image/svg+xml"
        assert "sandbox" in headers["Content-Security-Policy"]

        for call_id in ("escape1", "escape2", "escape3"):
            status, _, body = await get(f"/console/history/calls/{call_id}")
            assert status == 200 and json.loads(body)["recording"] is False
            assert json.loads(body)["turns"] == []
            assert (await get(f"/console/history/calls/{call_id}/recording.wav"))[0] == 404
        for hostile in ("..%2Fsecret", "..%2F..%2Fcalls_dir%2Fgood1", "%2e%2e", "good1%00"):
            status, _, _ = await get(f"/console/history/calls/{hostile}/recording.wav")
            assert status == 404
            status, _, _ = await get(f"/console/history/calls/{hostile}")
            assert status == 404
        assert (await get("/console/history/calls/escape1/timeline.svg"))[0] == 404


async def test_listen_in_streams_both_sides_and_is_logged_and_counted(tmp_path: Path) -> None:
    """Listen-in with the bearer header: the format, then stereo PCM16 in which the caller's
    speech is on the left; it ends with the call; its start is logged and counted."""
    port, cfg = console_config(tmp_path)
    env = {"GATEWAY_API_TOKEN": TOKEN}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with GatewayProcess(tmp_path, cfg, env=env) as gateway, aiohttp.ClientSession() as s:
        client = Client(port, s)
        dial = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "dial", gateway.uri("echo"),
            "--say", "Testing the listen in, one two three four five.", "--listen", "20",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=REPO,
        )  # fmt: skip
        try:
            answered = await gateway.wait_for("call.answered", timeout=15)
            call_id = answered["call_id"]
            url = client.base.replace("http", "ws") + f"/console/v1/calls/{call_id}/listen"
            audio = bytearray()
            async with s.ws_connect(url, headers=auth) as ws:
                first = await asyncio.wait_for(ws.receive_json(), 5)
                assert first == {"rate": 8000, "channels": 2, "format": "s16le"}
                while len(audio) < 8000 * 4 * 3:  # three seconds
                    message = await asyncio.wait_for(ws.receive(), 5)
                    assert message.type == aiohttp.WSMsgType.BINARY
                    audio += message.data
                started = await gateway.wait_for("console.listen_started", timeout=5)
                assert started["user"] == "console" and started["source"].startswith("127.")
                status, _, _ = await client.request(
                    "POST", f"/v1/calls/{call_id}/hangup", headers=auth
                )
                assert status == 202
                # The stream ends with the call: the server closes the socket.
                while True:
                    message = await asyncio.wait_for(ws.receive(), 10)
                    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
            stopped = await gateway.wait_for("console.listen_stopped", timeout=10)
            assert stopped["call_id"] == call_id and stopped["seconds"] >= 3
            stereo = np.frombuffer(bytes(audio), dtype="<i2").reshape(-1, 2).astype(float)
            caller_rms = float(np.sqrt((stereo[:, 0] ** 2).mean()))
            assert caller_rms > 300, caller_rms  # the caller's speech, on the left
            async with s.get(gateway.metrics_url + "/metrics") as response:
                text = await response.text()
            assert "sipgw_console_listens_total 1.0" in text
        finally:
            if dial.returncode is None:
                dial.kill()
            await dial.wait()
