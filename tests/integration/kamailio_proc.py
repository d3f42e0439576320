"""Kamailio as the dispatcher in front of gateways, run from deploy/kamailio/kamailio.cfg (and,
with TLS, deploy/kamailio/tls.cfg with the test PKI's paths in it)."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from .gateway_proc import REPO
from .peers import LOOPBACK, PeerError, _stop_process, free_udp_port, wait_udp_bound

CONFIG = REPO / "deploy" / "kamailio" / "kamailio.cfg"
TLS_CONFIG = REPO / "deploy" / "kamailio" / "tls.cfg"
# /usr/sbin is not on every user's PATH.
BINARY = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin")


def tls_module_installed() -> bool:
    """Kamailio's tls.so (Debian kamailio-tls-modules) is where the binary looks for modules."""
    return (
        any(Path("/usr/lib").glob("*/kamailio/modules/tls.so"))
        or Path("/usr/lib/kamailio/modules/tls.so").is_file()
    )


@dataclass(frozen=True)
class KamailioTls:
    """The files Kamailio's tls.cfg names: what it shows callers (`server_cert`/`server_key`)
    and the CA their client certificates must chain to; what it shows the gateways
    (`client_cert`/`client_key`) and the CA their certificates must chain to."""

    server_cert: Path
    server_key: Path
    callers_ca: Path
    client_cert: Path
    client_key: Path
    gateways_ca: Path

    def render(self) -> str:
        """deploy/kamailio/tls.cfg with its /etc/kamailio/tls/ paths replaced by these files
        (the shipped profiles, not a copy of them: a path it no longer names fails here)."""
        text = TLS_CONFIG.read_text()
        for name, path in (
            ("server.crt", self.server_cert),
            ("server.key", self.server_key),
            ("callers-ca.pem", self.callers_ca),
            ("client.crt", self.client_cert),
            ("client.key", self.client_key),
            ("gateways-ca.pem", self.gateways_ca),
        ):
            shipped = f"/etc/kamailio/tls/{name}"
            if f"= {shipped}\n" not in text:
                raise ValueError(f"{TLS_CONFIG} no longer names {shipped}")
            text = text.replace(f"= {shipped}\n", f"= {path}\n")
        return text


class Kamailio:
    """`kamailio -f deploy/kamailio/kamailio.cfg -DD -E` on a free loopback port, dispatching to
    `gateways` (SIP ports on 127.0.0.1), probing them every `ping_interval` seconds, taking
    requests from the `trusted` addresses (its source ACL) and the gateways only.

    With `tls`: `-A WITH_TLS`, a TLS listener on `tls_port` as well (same loopback address),
    `gateways` are their TLS ports and dispatched to with `;transport=tls`, and the tls
    module's profiles are deploy/kamailio/tls.cfg with `tls`'s files."""

    def __init__(
        self,
        workdir: Path,
        gateways: list[int],
        *,
        ping_interval: int = 1,
        timeout_ms: int = 1000,
        trusted: tuple[str, ...] = (LOOPBACK,),
        pike_reqs: int | None = None,
        tls: KamailioTls | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = free_udp_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.list_path = workdir / "dispatcher.list"
        transport = ";transport=tls" if tls is not None else ""
        self.list_path.write_text("".join(f"1 sip:{LOOPBACK}:{p}{transport}\n" for p in gateways))
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
        self.tls_port: int | None = None
        if tls is not None:
            self.tls_port = free_udp_port(also_tcp=True)
            tls_cfg = workdir / "tls.cfg"
            tls_cfg.write_text(tls.render())
            self.argv += [
                "-A", "WITH_TLS",
                "-A", f"TLS_LISTEN=tls:{LOOPBACK}:{self.tls_port}",
                "-A", f'TLS_CONFIG="{tls_cfg}"',
                "-A", "TLS_MAX_CONNS=64",
            ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def __aenter__(self) -> Kamailio:
        if BINARY is None:
            raise FileNotFoundError("kamailio not found (run scripts/install-test-peers.sh)")
        if self.tls_port is not None and not tls_module_installed():
            raise FileNotFoundError(
                "Kamailio's tls module not found (kamailio-tls-modules; run "
                "scripts/install-test-peers.sh)"
            )
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
            # Its TLS listener comes up after the UDP socket: a connection before it is refused.
            tls = [self.tls_port] if self.tls_port is not None else []
            await wait_udp_bound(
                [self.port], timeout=15, proc=self.proc, what="kamailio", listening=tls
            )
        except PeerError as exc:
            await self.__aexit__()
            raise PeerError(f"{exc}\n{self.tail()}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        # SIGTERM to the main process: it stops its children itself.
        if self.proc is not None:
            await _stop_process(self.proc, 10)
