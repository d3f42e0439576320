"""The gateway as users run it: `python -m gateway run --config FILE`, in a subprocess, and
the same gateway in the test's own event loop (`InProcessGateway`).

Their log lines are the test's window into them: `start()` returns on `gateway.ready`, and
`wait_for(event)` waits for a log event, never on a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
import yaml

from gateway.app import Gateway, StartupError
from gateway.config import parse_config
from gateway.sip.transactions import SipTimers

from .peers import LOOPBACK, free_port_block, free_udp_port

RTP_PORTS = 40
REPO = Path(__file__).resolve().parents[2]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def test_config(config: dict[str, Any] | None) -> tuple[int, int, dict[str, Any]]:
    """Free SIP and metrics ports and a gateway config on loopback with its own RTP ports."""
    port = free_udp_port(also_tcp=True)
    metrics_port = free_udp_port(also_tcp=True)
    rtp = free_port_block(RTP_PORTS)
    base = {
        "sip": {"bind": LOOPBACK, "port": port, "allow_from": ["127.0.0.0/8"]},
        "media": {"rtp_port_min": rtp, "rtp_port_max": rtp + RTP_PORTS - 1},
        "logging": {"format": "json", "level": "debug"},
        # stop() hangs up at once unless a test is about draining (test_service.py).
        "service": {"drain_timeout_s": 0},
        "metrics": {"bind": LOOPBACK, "port": metrics_port},
    }
    return port, metrics_port, _merge(base, config or {})


class EventLog:
    """Log events of a gateway, and waiting on them (never on a sleep)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._changed = asyncio.Event()

    def _alive(self) -> bool:
        return True

    def find(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(
        self,
        name: str,
        *,
        timeout: float,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
    ) -> dict[str, Any]:
        """The first log event `name` that satisfies `where`, waiting up to `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for event in self.events:
                        if event.get("event") == name and where(event):
                            return event
                    if not self._alive():
                        raise AssertionError(f"gateway exited before {name}:\n{self.tail()}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {name} within {timeout} s:\n{self.tail()}") from None

    async def events_after(self, seen: int, *, timeout: float) -> list[dict[str, Any]]:
        """The events logged after the first ``seen``, waiting up to ``timeout`` for one."""
        async with asyncio.timeout(timeout):
            while len(self.events) <= seen:
                if not self._alive():
                    raise AssertionError(f"gateway exited:\n{self.tail()}")
                self._changed.clear()
                await self._changed.wait()
        return self.events[seen:]

    async def wait_count(self, name: str, count: int, *, timeout: float) -> None:
        """Wait until `count` log events `name` have been seen."""
        seen = 0

        def counted(event: dict[str, Any]) -> bool:
            nonlocal seen
            seen = len(self.find(name))
            return seen >= count

        try:
            await self.wait_for(name, timeout=timeout, where=counted)
        except AssertionError:
            raise AssertionError(f"{seen} of {count} {name} within {timeout} s") from None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.raw[-lines:])


class GatewayProcess(EventLog):
    """`env` adds to (or, with a None value, removes from) the gateway's environment;
    `wrapper` is a command the gateway runs under (e.g. strace and its options)."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | None = None,
        env: dict[str, str | None] | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.wrapper = list(wrapper)
        self.workdir = workdir
        self.extra_config = config
        self.port, self.metrics_port, self.config = test_config(config)
        self.env = {k: v for k, v in os.environ.items() if k not in (env or {})}
        self.env.update({k: v for k, v in (env or {}).items() if v is not None})
        self.config_path = workdir / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.log_path = workdir / "gateway.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    def _alive(self) -> bool:
        return self._reader is None or not self._reader.done()

    def uri(self, user: str = "echo") -> str:
        return f"sip:{user}@{LOOPBACK}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}"

    def write_config(self, config: dict[str, Any]) -> None:
        """Rewrite the config file (for a reload); `config` is merged over the current one."""
        self.config = _merge(self.config, config)
        self.config_path.write_text(yaml.safe_dump(self.config))

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def send_signal(self, sig: int) -> None:
        assert self._proc is not None
        self._proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        """The exit code once the gateway exits by itself (fails the test after `timeout`)."""
        assert self._proc is not None
        try:
            async with asyncio.timeout(timeout):
                code = await self._proc.wait()
        except TimeoutError:
            raise AssertionError(
                f"gateway still running after {timeout} s:\n{self.tail()}"
            ) from None
        if self._reader is not None:
            async with asyncio.timeout(5):
                await self._reader
        return code

    async def start(
        self, timeout: float = 20.0, wait_ready: bool = True, attempts: int = 3
    ) -> GatewayProcess:
        """Start (and wait for gateway.ready). A port taken between choosing and binding it
        (other tests run beside this one) means new ports and another try."""
        for attempt in range(attempts):
            try:
                return await self._start(timeout, wait_ready)
            except AssertionError as exc:
                if "Address already in use" not in str(exc) or attempt + 1 == attempts:
                    raise
                await self.stop()
                self.port, self.metrics_port, self.config = test_config(self.extra_config)
                self.config_path.write_text(yaml.safe_dump(self.config))
                self.events.clear()
                self.raw.clear()
        raise AssertionError("unreachable")

    async def _start(self, timeout: float, wait_ready: bool) -> GatewayProcess:
        self._proc = await asyncio.create_subprocess_exec(
            *self.wrapper,
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--config",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=REPO,
            env=self.env,
        )
        self._reader = asyncio.create_task(self._read())
        if wait_ready:
            await self.wait_for("gateway.ready", timeout=timeout)
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with self.log_path.open("w") as log:
            async for raw in self._proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                log.write(line + "\n")
                log.flush()
                self.raw.append(line)
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        self.events.append(event)
                self._changed.set()
        self._changed.set()

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, as systemd would; returns the exit code."""
        if self._proc is None:
            return None
        if self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                await self._proc.wait()
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._reader
        return self._proc.returncode

    async def __aenter__(self) -> GatewayProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class InProcessGateway(EventLog):
    """The gateway in the test's own event loop, for what a subprocess hides: SIP timers
    shrunk (timer tests), and its state (calls, transactions, Realtime sessions) to inspect.

    Its structlog events are captured here instead of printed.
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        timers: SipTimers | None = None,
    ) -> None:
        super().__init__()
        self._extra, self._timers = config, timers
        self.port, self.metrics_port, self.config = test_config(config)
        self.gateway = Gateway(parse_config(self.config), sip_timers=timers)
        self._saved: dict[str, Any] | None = None

    def uri(self, user: str = "echo") -> str:
        return f"sip:{user}@{LOOPBACK}:{self.port}"

    def _capture(self, logger: Any, method: str, event: dict[str, Any]) -> Any:
        event = {**event, "level": method}
        self.events.append(event)
        self.raw.append(json.dumps(event, default=str))
        self._changed.set()
        raise structlog.DropEvent

    @property
    def realtime_sessions(self) -> list[Any]:
        embedded = self.gateway._embedded
        return list(embedded.sessions) if embedded is not None else []

    @property
    def uas(self) -> Any:
        return self.gateway._uas[0]

    async def __aenter__(self) -> InProcessGateway:
        self._saved = structlog.get_config()
        structlog.configure(processors=[self._capture], cache_logger_on_first_use=False)
        try:
            for attempt in range(3):
                try:
                    await self.gateway.start()
                    break
                except StartupError as exc:  # a port taken by a test running beside this one
                    if "Address already in use" not in str(exc) or attempt == 2:
                        raise
                    self.port, self.metrics_port, self.config = test_config(self._extra)
                    self.gateway = Gateway(parse_config(self.config), sip_timers=self._timers)
        except BaseException:
            structlog.configure(**self._saved)
            raise
        # As `lifecycle.Service.run` does once started: what is loaded so far (here the whole
        # test process) out of the collector's sight, so the full collection the gateway makes
        # when its last call ends (gc_pauses.FullCollections) costs what it costs in the daemon,
        # not ~100 ms over pytest's heap with timer G waiting behind it.
        gc.collect()
        gc.freeze()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.gateway.stop()
        finally:
            gc.unfreeze()
            if self._saved is not None:
                structlog.configure(**self._saved)
