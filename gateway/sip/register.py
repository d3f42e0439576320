"""Registration mode: stay registered to a PBX as an extension (RFC 3261 §10).

aiosipua's `Registration` does the exchange: digest with qop=auth, 423 Interval
Too Brief, a refresh at 90 % of the granted interval. What it leaves out is kept
here: a registrar that never answers is a failure too (after 64*T1), and every
failure is followed by a new attempt after a growing pause (1 s doubling to
5 min, RFC 5626 §4.5 in spirit), so a PBX restart never leaves the extension
unregistered for good. A registrar named by host name is looked up before every attempt,
asynchronously and with a timeout: never by `sendto` on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import structlog
from aiosipua import SipDigestAuth, SipUAC
from aiosipua.registration import Registration
from aiosipua.utils import format_addr

from ..config import SipRegisterConfig
from .addresses import ip_literal
from .tls_transport import TlsTransport

log = structlog.get_logger("gateway.sip")

ANSWER_TIMEOUT_S = 32.0  # 64*T1: the registrar did not answer
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 300.0
RESOLVE_TIMEOUT_S = 5.0


class Registrar:
    """Keeps one binding alive at the configured registrar, until `stop()`."""

    def __init__(
        self,
        uac: SipUAC,
        cfg: SipRegisterConfig,
        password: str,
        contact: tuple[str, int],
        *,
        user_agent: str,
        backoff_min_s: float = BACKOFF_MIN_S,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
        tls: TlsTransport | None = None,
    ) -> None:
        self._tls = tls
        host, port = cfg.registrar_address
        self._registrar = (host, port)
        self._local_host = contact[0]
        domain = cfg.domain or host
        self.aor = f"sip:{cfg.user}@{domain}"
        self.registration = Registration(
            uac,
            self.aor,
            (host, port),
            expires=cfg.expires,
            auth=SipDigestAuth(cfg.auth_user or cfg.user, password),
            contact_uri=f"sip:{cfg.user}@{format_addr(*contact)}"
            + (";transport=tls" if tls is not None else ""),
            registrar_uri=f"sip:{domain}",
            user_agent=user_agent,
        )
        self._outcomes: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=16)
        self.registration.on_registered = lambda r: self._put("registered", "")
        self.registration.on_failed = lambda r, status, reason: self._put(
            "failed", f"{status} {reason}"
        )
        self.registration.on_expired = lambda r: self._put("expired", "no refresh answered")
        self._backoff_min = backoff_min_s
        self._answer_timeout = answer_timeout_s
        self._task: asyncio.Task[None] | None = None

    def _put(self, outcome: str, detail: str) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._outcomes.put_nowait((outcome, detail))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sip-register")

    async def stop(self) -> None:
        """Stop refreshing and remove the binding (Expires: 0), without waiting for the answer."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.registration.unregister()

    async def _resolve(self) -> str | None:
        """The registrar's address, looked up off the event loop (a host name would otherwise
        be resolved by sendto, synchronously, on every REGISTER); None with the reason logged."""
        host, port = self._registrar
        if ip_literal(host) is not None:
            self.registration.registrar = (ip_literal(host) or host, port)
            return None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                kind = socket.SOCK_STREAM if self._tls is not None else socket.SOCK_DGRAM
                infos = await loop.getaddrinfo(host, port, type=kind)
        except (OSError, TimeoutError) as exc:
            return f"cannot resolve {host}: {getattr(exc, 'strerror', None) or 'timed out'}"
        family = socket.AF_INET6 if ":" in self._local_host else socket.AF_INET
        addresses = [info[4][0] for info in infos if info[0] == family]
        if not addresses:
            return f"{host} has no address of the listener's family"
        self.registration.registrar = (str(addresses[0]), port)
        return None

    async def _run(self) -> None:
        backoff = self._backoff_min
        while True:
            problem = await self._resolve()
            if problem is None and self._tls is not None:
                # The connection the REGISTERs, their refreshes and the PBX's calls use.
                problem = await self._tls.open(self.registration.registrar, self._registrar[0])
            if problem is None:
                self.registration.register()
                outcome, detail = await self._next(self._answer_timeout)
            else:
                outcome, detail = "failed", problem
            while outcome == "registered":
                backoff = self._backoff_min
                log.info(
                    "sip.registered",
                    aor=self.aor,
                    expires_s=self.registration.granted_expires,
                )
                # Refreshes run inside Registration; we hear of them as they succeed or fail.
                outcome, detail = await self._next(None)
            log.warning("sip.register_failed", aor=self.aor, reason=detail, retry_in_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, BACKOFF_MAX_S)

    async def _next(self, timeout: float | None) -> tuple[str, str]:
        try:
            async with asyncio.timeout(timeout):
                return await self._outcomes.get()
        except TimeoutError:
            return "failed", f"no answer from the registrar within {timeout:g} s"
