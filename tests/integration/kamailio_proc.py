"""Kamailio as the dispatcher in front of gateways, run from deploy/kamailio/kamailio.cfg."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from .gateway_proc import REPO
from .peers import LOOPBACK, PeerError, _stop_process, free_udp_port, wait_udp_bound

CONFIG = REPO / "deploy" / "kamailio" / "kamailio.cfg"
# /usr/sbin is not on every user's PATH.
BINARY = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin")


class Kamailio:
    """`kamailio -f deploy/kamailio/kamailio.cfg -DD -E` on a free loopback port, dispatching to
    `gateways` (SIP ports on 127.0.0.1), probing them every `ping_interval` seconds, taking
    requests from the `trusted` addresses (its source ACL) and the gateways only."""

    def __init__(
        self,
        workdir: Path,
        gateways: list[int],
        *,
        ping_interval: int = 1,
        timeout_ms: int = 1000,
        trusted: tuple[str, ...] = (LOOPBACK,),
        pike_reqs: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = free_udp_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.list_path = workdir / "dispatcher.list"
        self.list_path.write_text("".join(f"1 sip:{LOOPBACK}:{p}\n" for p in gateways))
        self.trusted_path = workdir / "trusted.list"
        self.trusted_path.write_text("".join(f"1 {address} 32\n" for address in trusted))
        self.log_path = workdir / "kamailio.log"
        self.argv = [
            BINARY or "kamailio", "-f", str(CONFIG), "-DD", "-E",
            "-Y", str(workdir), "-P", str(workdir / "kamailio.pid"), "-m", "64", "-M", "8",
            "-A", f"LISTEN=udp:{LOOPBACK}:{self.port}",
            "-A", f'DISPATCHER_LIST="{self.list_path}"',
            "-A", f"PING_INTERVAL={ping_interval}",
            "-A", f"INVITE_TIMEOUT={timeout_ms}",
            "-A", f'TRUSTED_LIST="{self.trusted_path}"',
        ]  # fmt: skip
        if pike_reqs is not None:
            self.argv += ["-A", f"PIKE_REQS={pike_reqs}"]
        self.proc: asyncio.subprocess.Process | None = None

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def __aenter__(self) -> Kamailio:
        if BINARY is None:
            raise FileNotFoundError("kamailio not found (run scripts/install-test-peers.sh)")
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            await wait_udp_bound([self.port], timeout=15, proc=self.proc, what="kamailio")
        except PeerError as exc:
            await self.__aexit__()
            raise PeerError(f"{exc}\n{self.tail()}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        # SIGTERM to the main process: it stops its children itself.
        if self.proc is not None:
            await _stop_process(self.proc, 10)
