"""Digest authentication under attack, over real UDP sockets: replayed credentials, a digest
made for another Request-URI, a qop downgrade, non-ASCII bytes in the Authorization header,
SHA-256 (RFC 8760), and the fail2ban-like block of a source that keeps failing, including
against SIPVicious' svcrack.

The callers speak raw SIP from their own loopback addresses (127.0.0.1 and 127.0.0.2) and
compute their credentials with an oracle written from RFC 7616 §3.4.1, independent of the
gateway's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from .gateway_proc import InProcessGateway
from .peers import LOOPBACK, free_udp_port
from .scenarios import FAST_TIMERS, SIP_TESTS

pytestmark = SIP_TESTS

USER, PASSWORD = "asterisk", "s3cret-for-tests"
PBX, ATTACKER = LOOPBACK, "127.0.0.2"
URI = "sip:echo@127.0.0.1"


def auth_config(**auth: Any) -> dict[str, Any]:
    users = [{"username": USER, "password_env": "GW_DIGEST_PW"}]
    return {"sip": {"auth": {"realm": "gw.test", "users": users, **auth}}}


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_DIGEST_PW", PASSWORD)


def digest(
    algorithm: str, nonce: str, *, nc: str, cnonce: str, uri: str, password: str, qop: bool
) -> str:
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    ha1, ha2 = h(f"{USER}:gw.test:{password}"), h(f"INVITE:{uri}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}") if qop else h(f"{ha1}:{nonce}:{ha2}")


def credentials(
    nonce: str,
    *,
    algorithm: str = "MD5",
    nc: str = "00000001",
    uri: str = URI,
    password: str = PASSWORD,
    qop: bool = True,
) -> str:
    cnonce = secrets.token_hex(4)
    response = digest(algorithm, nonce, nc=nc, cnonce=cnonce, uri=uri, password=password, qop=qop)
    value = (
        f'Digest username="{USER}", realm="gw.test", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}'
    )
    return value + (f', qop=auth, nc={nc}, cnonce="{cnonce}"' if qop else "")


@dataclass
class Response:
    status: int
    text: str

    def headers(self, name: str) -> list[str]:
        return re.findall(rf"^{name}: *(.*?)\r?$", self.text, re.M | re.I)


def nonce_of(challenge: str) -> str:
    match = re.search(r'nonce="([^"]+)"', challenge)
    assert match is not None, challenge
    return match[1]


class Phone(asyncio.DatagramProtocol):
    """A caller writing raw SIP over UDP from its own address; responses kept by branch."""

    def __init__(self) -> None:
        self.responses: dict[str, list[Response]] = defaultdict(list)
        self.changed = asyncio.Event()
        self.sock: asyncio.DatagramTransport | None = None
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode("utf-8", "replace")
        branch = re.search(r"branch=(z9hG4bK-[\w.-]+)", text)
        if text.startswith("SIP/2.0 ") and branch:
            self.responses[branch[1]].append(Response(int(text.split(" ", 2)[1]), text))
            self.changed.set()

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        host, port = self.sock.get_extra_info("sockname")[:2]
        return host, port

    def send_invite(self, *, uri: str = URI, auth: str | bytes | None = None) -> str:
        """An INVITE in a new call (its branch returned); `auth` bytes go out as they are."""
        assert self.sock is not None
        self.sent += 1
        host, port = self.address
        tag = secrets.token_hex(4)
        branch = f"z9hG4bK-{tag}"
        body = (
            f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            "m=audio 4000 RTP/AVP 0\r\n"
        )
        lines = [
            f"INVITE {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport",
            f"From: <sip:pbx@{host}>;tag={tag}",
            f"To: <{uri}>",
            f"Call-ID: {tag}@{host}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:pbx@{host}:{port}>",
            "Max-Forwards: 70",
            "Content-Type: application/sdp",
            f"Content-Length: {len(body)}",
        ]
        head = "\r\n".join(lines).encode()
        if auth is not None:
            head += b"\r\nAuthorization: " + (auth if isinstance(auth, bytes) else auth.encode())
        self.sock.sendto(head + b"\r\n\r\n" + body.encode())
        return branch

    async def final(self, branch: str, timeout: float = 10) -> Response:
        async with asyncio.timeout(timeout):
            while True:
                for response in self.responses[branch]:
                    if response.status >= 200:
                        return response
                self.changed.clear()
                await self.changed.wait()

    async def call(self, **kwargs: Any) -> Response:
        return await self.final(self.send_invite(**kwargs))

    async def challenge(self) -> list[str]:
        """A fresh challenge: the WWW-Authenticate values of a 401 to a bare INVITE."""
        response = await self.call()
        assert response.status == 401, response.text
        return response.headers("WWW-Authenticate")


@contextlib.asynccontextmanager
async def phone(host: str, port: int) -> AsyncIterator[Phone]:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        Phone, local_addr=(host, 0), remote_addr=(LOOPBACK, port)
    )
    try:
        yield protocol
    finally:
        assert protocol.sock is not None
        protocol.sock.close()


def reasons(gateway: InProcessGateway) -> list[str]:
    return [e["reason"] for e in gateway.find("call.rejected")]


def metric(gateway: InProcessGateway, name: str, **labels: str) -> float:
    return gateway.gateway.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_sha256_is_offered_beside_md5_and_its_credentials_admit_the_call() -> None:
    async with InProcessGateway(auth_config()) as gateway, phone(PBX, gateway.port) as pbx:
        challenges = await pbx.challenge()
        algorithms = [re.search(r"algorithm=([\w-]+)", c)[1] for c in challenges]  # type: ignore[index]
        # MD5 on top by default: callers that read only the first challenge know only MD5.
        assert algorithms == ["MD5", "SHA-256"]
        assert all('qop="auth"' in c for c in challenges)
        nonce = nonce_of(challenges[1])
        answer = await pbx.call(auth=credentials(nonce, algorithm="SHA-256"))
        assert answer.status == 200, answer.text
        # MD5 works too, with a nonce of its own.
        md5 = nonce_of((await pbx.challenge())[0])
        assert (await pbx.call(auth=credentials(md5, algorithm="MD5"))).status == 200


async def test_sha256_first_when_configured() -> None:
    config = auth_config(algorithms=["SHA-256", "MD5"])
    async with InProcessGateway(config) as gateway, phone(PBX, gateway.port) as pbx:
        challenges = await pbx.challenge()
        algorithms = [re.search(r"algorithm=([\w-]+)", c)[1] for c in challenges]  # type: ignore[index]
        assert algorithms == ["SHA-256", "MD5"]  # RFC 8760 §2.4: most preferred on top


async def test_a_replayed_authorization_is_refused() -> None:
    """An Authorization captured on the wire and sent again in a new INVITE (same nonce,
    same nc): from the PBX's own address (a spoofed source) and from another host."""
    async with (
        InProcessGateway(auth_config()) as gateway,
        phone(PBX, gateway.port) as pbx,
        phone(ATTACKER, gateway.port) as attacker,
    ):
        captured = credentials(nonce_of((await pbx.challenge())[0]), algorithm="SHA-256")
        assert (await pbx.call(auth=captured)).status == 200
        replayed = await pbx.call(auth=captured)
        assert replayed.status == 401 and replayed.headers("WWW-Authenticate")
        assert reasons(gateway)[-1] == "digest: replayed nonce count"
        elsewhere = await attacker.call(auth=captured)
        assert elsewhere.status == 401
        assert len(gateway.gateway.calls) == 1  # only the PBX's own call


async def test_credentials_made_for_another_request_uri_get_400() -> None:
    async with InProcessGateway(auth_config()) as gateway, phone(PBX, gateway.port) as pbx:
        nonce = nonce_of((await pbx.challenge())[0])
        made_for = credentials(nonce, algorithm="SHA-256", uri="sip:echo@127.0.0.1")
        refused = await pbx.call(uri="sip:premium@127.0.0.1", auth=made_for)
        assert refused.status == 400, refused.text
        assert reasons(gateway)[-1] == "digest: digest uri is not the Request-URI"
        assert not gateway.gateway.calls


async def test_credentials_without_qop_are_refused_no_downgrade() -> None:
    """We offer qop="auth"; an answer in the RFC 2069 style (no qop, nc, cnonce) is a
    downgrade an attacker in the middle could force, and is refused."""
    async with InProcessGateway(auth_config()) as gateway, phone(PBX, gateway.port) as pbx:
        nonce = nonce_of((await pbx.challenge())[-1])  # MD5
        refused = await pbx.call(auth=credentials(nonce, algorithm="MD5", qop=False))
        assert refused.status == 401
        assert "downgrade" in reasons(gateway)[-1]
        assert not gateway.gateway.calls


def hostile(nonce: str) -> list[bytes]:
    """Authorization values with non-ASCII bytes: Latin-1 (not UTF-8), UTF-8 in each field,
    digits from another script, a raw 0xff."""
    right = credentials(nonce).encode()
    return [
        right.replace(nonce.encode(), nonce.encode()[:-1] + b"\xe9"),  # Latin-1 é in the nonce
        right.replace(b'response="', b'response="\xc3\xa9'),
        right.replace(b'username="asterisk"', b'username="ast\xc3\xa9risk"'),
        right.replace(b'username="asterisk"', b'username="ast\xe9risk"'),
        right.replace(b"nc=00000001", "nc=٠٠٠٠٠٠٠١".encode()),
        right.replace(b'cnonce="', b'cnonce="\xc3\xa9'),
        right.replace(b'realm="gw.test"', b'realm="gw.t\xc3\xa9st"'),
        right.replace(b'uri="sip:', b'uri="sip:\xc3\xa9'),
        b"Digest \xff\xfe\xfd",
        b"\xc3\x89igest username=x",
    ]


async def test_non_ascii_authorization_gets_a_final_4xx_and_leaves_nothing() -> None:
    async with (
        InProcessGateway(auth_config(), timers=FAST_TIMERS) as gateway,
        phone(PBX, gateway.port) as pbx,
    ):
        nonce = nonce_of((await pbx.challenge())[-1])  # MD5
        branches = [pbx.send_invite(auth=value) for value in hostile(nonce)]
        statuses = [(await pbx.final(branch)).status for branch in branches]
        assert all(400 <= s < 500 for s in statuses), statuses
        assert not gateway.find("sip.handler_failed")
        # Never ACKed: every INVITE's transaction ends at timer H, none is left behind.
        await gateway.wait_count("sip.ack_timeout", pbx.sent, timeout=15)
        assert len(gateway.uas.invites) == 0 and not gateway.uas._calls
        assert not gateway.gateway.calls


async def test_a_source_that_keeps_failing_is_blocked_and_another_is_not() -> None:
    config = auth_config(max_failures=3, failure_window_s=60, block_s=600)
    async with (
        InProcessGateway(config) as gateway,
        phone(ATTACKER, gateway.port) as attacker,
        phone(PBX, gateway.port) as pbx,
    ):
        spare = nonce_of((await attacker.challenge())[0])  # kept for the right password
        statuses = []
        for guess in ("123456", "password", "asterisk"):
            nonce = nonce_of((await attacker.challenge())[0])
            statuses.append((await attacker.call(auth=credentials(nonce, password=guess))).status)
        assert statuses == [401, 401, 403]  # the third failure starts the block
        bare = await attacker.call()
        assert bare.status == 403 and not bare.headers("WWW-Authenticate")
        right = await attacker.call(auth=credentials(spare, password=PASSWORD))
        assert right.status == 403  # even the right password, while blocked
        # The PBX, on another address, is not affected.
        nonce = nonce_of((await pbx.challenge())[0])
        assert (await pbx.call(auth=credentials(nonce, algorithm="SHA-256"))).status == 200
        (blocked,) = gateway.find("sip.auth_blocked")
        assert blocked["source"] == ATTACKER and blocked["block_s"] == 600
        assert metric(gateway, "sipgw_auth_blocks_total") == 1
        assert metric(gateway, "sipgw_auth_blocked_sources") == 1
        rejected = metric(gateway, "sipgw_calls_total", outcome="rejected", reason="auth_blocked")
        assert rejected == 3  # the third guess, the bare INVITE, the right password


# --- SIPVicious ------------------------------------------------------------------------------

SVCRACK = shutil.which(
    "sipvicious_svcrack", path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath])
)


class Output:
    """A process's output lines as they come, and waiting for one (or for its exit)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    async def wait_for(self, match: Callable[[str], bool], timeout: float) -> str:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for line in self.lines:
                        if match(line):
                            return line
                    if self.reader.done():
                        raise AssertionError("exited first")
                    self._changed.clear()
                    await self._changed.wait()
        except (TimeoutError, AssertionError) as exc:
            tail = "\n".join(self.lines[-30:])
            raise AssertionError(f"svcrack: no such line ({exc or 'timed out'}):\n{tail}") from None


@pytest.mark.skipif(SVCRACK is None, reason="sipvicious not installed (pip install sipvicious)")
async def test_svcrack_is_blocked_before_it_reaches_the_password(tmp_path: Path) -> None:
    """svcrack guesses a dictionary in which the password comes after max_failures guesses:
    the block engages first, and its guesses (the right one included) get 403 from then on.

    svcrack knows only MD5 and takes the first challenge (a SHA-256 one makes it crash), so
    the gateway offers MD5 alone here, as to an older PBX. It sends to 127.0.0.1 only, from
    127.0.0.1 (svcrack 0.3.8 ignores its -b option and binds every interface, on a free
    port), and is stopped once its dictionary is spent; the PBX calls from 127.0.0.2."""
    assert SVCRACK is not None
    max_failures = 5
    words = [f"guess{i}" for i in range(max_failures + 2)] + [PASSWORD]
    words += [f"later{i}" for i in range(10)]
    dictionary = tmp_path / "words.txt"
    dictionary.write_text("\n".join(words) + "\n")
    config = auth_config(algorithms=["MD5"], max_failures=max_failures)
    async with InProcessGateway(config) as gateway, phone(ATTACKER, gateway.port) as pbx:
        proc = await asyncio.create_subprocess_exec(
            SVCRACK, "-u", USER, "-d", str(dictionary), "-m", "INVITE",
            "-p", str(gateway.port), "-x", LOOPBACK, "-P", str(free_udp_port("0.0.0.0")),
            "-t", "0.02", "--maximumtime", "5", "-vv", LOOPBACK,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        output = Output(proc)
        try:
            await output.wait_for(lambda line: f"trying {PASSWORD}" in line, timeout=30)
            await output.wait_for(lambda line: "no more passwords" in line, timeout=30)
            # Everything svcrack sent is in the gateway's socket before the PBX's INVITE: once
            # that is answered, the gateway has decided on every guess.
            nonce = nonce_of((await pbx.challenge())[0])
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)  # svcrack prints its summary and exits
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
            await output.reader
        text = "\n".join(output.lines)
        assert "The password for" not in text and "found nothing" in text, text[-3000:]
        (blocked,) = gateway.find("sip.auth_blocked")
        assert blocked["source"] == LOOPBACK
        assert not gateway.gateway.calls and not gateway.find("call.received")
        # The PBX, on another address, still gets its call through.
        assert (await pbx.call(auth=credentials(nonce))).status == 200
        assert metric(gateway, "sipgw_auth_blocks_total") == 1
        failures = [r for r in reasons(gateway) if "wrong password" in r]
        assert len(failures) == max_failures  # guesses checked; every later one was refused
        blocked_refusals = metric(
            gateway, "sipgw_calls_total", outcome="rejected", reason="auth_blocked"
        )
        assert blocked_refusals >= len(words) - max_failures
