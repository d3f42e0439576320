"""The daemon under a service manager: readiness, watchdog, draining, reloading.

systemd's notify protocol (sd_notify(3)) is one datagram of `KEY=VALUE` lines to the unix
socket named by `$NOTIFY_SOCKET` (a leading `@` means Linux's abstract namespace): a few lines
of our own instead of an unmaintained wrapper. Without `$NOTIFY_SOCKET` (a terminal, a
container) every notification is a no-op.

* READY=1 is sent once SIP listens and the Realtime side was checked (`Gateway.start`).
* WATCHDOG=1 is sent from the event loop every half of `$WATCHDOG_USEC`: a loop that is stuck
  stops sending it, and systemd kills and restarts the service.
* Every second the SIP listeners are checked. One that stopped (it never should: no send or
  receive error closes one) is a failure: /readyz answers 503 at once, WATCHDOG=1 is no longer
  sent, the calls are hung up and the process exits non-zero, so systemd starts it again.
* SIGTERM (and Ctrl-C) drains: no new calls (503), calls in progress may finish for
  `service.drain_timeout_s`, then BYE; a second signal hangs up at once. Exit 0.
* SIGHUP re-reads the config file and applies the agent, profiles and routes to new calls;
  active calls keep theirs; an invalid file is rejected with a log line and the running config
  stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import time
from collections.abc import Mapping

import structlog

from .app import Gateway
from .config import ConfigError, load_config

log = structlog.get_logger("gateway.lifecycle")

STOP_GRACE_S = 15.0  # after the drain: hanging up, closing sessions, flushing
LISTENER_CHECK_S = 1.0  # how often the SIP listeners are checked


class SystemdNotifier:
    """Sends sd_notify messages; does nothing when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)  # never stall the event loop on a full queue
        self.watchdog_interval = watchdog_interval(environ)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            log.warning("systemd.notify_failed", error=exc.strerror or str(exc), message=lines[0])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked for."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None  # meant for another process (sd_watchdog_enabled(3))
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


def _status(gateway: Gateway) -> str:
    n = len(gateway.calls)
    calls = f"{n} active call{'' if n == 1 else 's'}"
    return f"STATUS=draining: {calls}" if gateway.draining else f"STATUS={calls}"


class Service:
    """Runs a Gateway until it is told to stop, as a well-behaved systemd service."""

    def __init__(
        self,
        gateway: Gateway,
        config_path: str | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.gateway = gateway
        self.config_path = config_path
        self.notifier = notifier or SystemdNotifier()
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()  # a second stop signal: hang up now
        self._reloads: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        handlers = {
            signal.SIGTERM: self._on_stop_signal,
            signal.SIGINT: self._on_stop_signal,
            signal.SIGHUP: self._on_reload_signal,
        }
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
        watchdog: asyncio.Task[None] | None = None
        monitor: asyncio.Task[None] | None = None
        try:
            self.gateway.on_calls_changed = self._update_status
            self.gateway.on_failure = self._on_failure
            interval = self.notifier.watchdog_interval
            if interval is not None:
                watchdog = loop.create_task(self._watchdog(interval), name="watchdog")
            await self.gateway.start()
            monitor = loop.create_task(self._check_listeners(), name="listeners")
            # Everything loaded so far lives as long as the process: out of the collector's
            # sight, so a full collection under load scans only what calls allocated (a pause
            # of ~15 ms less, in the middle of the media clock).
            gc.collect()
            gc.freeze()
            self.notifier.notify("READY=1", _status(self.gateway))
            await self._stop.wait()
            if self.gateway.failure is None:
                await self.drain()
        finally:
            reason = "drain_timeout" if self.gateway.draining else "shutdown"
            try:
                await self.gateway.stop("failure" if self.gateway.failure else reason)
            finally:
                for task in (watchdog, monitor):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                for sig in handlers:
                    loop.remove_signal_handler(sig)
                self.notifier.close()

    # --- stopping -----------------------------------------------------------------------------

    def _on_stop_signal(self) -> None:
        if self._stop.is_set():
            log.warning("gateway.hurry", active_calls=len(self.gateway.calls))
            self._hurry.set()
        self._stop.set()

    async def drain(self) -> None:
        """Refuse new calls, then wait for the active ones up to service.drain_timeout_s."""
        gateway = self.gateway
        timeout = gateway.cfg.service.drain_timeout_s
        gateway.draining = True
        # Ask systemd for the time the drain needs, whatever TimeoutStopSec says.
        extend = int((timeout + STOP_GRACE_S) * 1e6)
        self.notifier.notify("STOPPING=1", _status(gateway), f"EXTEND_TIMEOUT_USEC={extend}")
        log.info("gateway.draining", active_calls=len(gateway.calls), drain_timeout_s=timeout)
        started = time.monotonic()
        deadline = started + timeout
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            while gateway.calls and not hurry.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                tasks = {c.task for c in gateway.calls.values() if c.task is not None}
                await asyncio.wait(
                    {hurry, *tasks}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            hurry.cancel()
        if gateway.calls:
            log.warning(
                "gateway.drain_timeout",
                active_calls=len(gateway.calls),
                waited_s=round(time.monotonic() - started, 3),
            )
        else:
            log.info("gateway.drained", waited_s=round(time.monotonic() - started, 3))

    # --- reloading ----------------------------------------------------------------------------

    def _on_reload_signal(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        """SIGHUP: re-read the config file; apply what can change without a restart."""
        if self.config_path is None:
            log.warning("config.reload_failed", errors=["no config file to reload"])
            return
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")
        try:
            # In a thread: reading and validating takes a few ms the media clock cannot spare.
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            self.gateway.metrics.config_reloads.labels("rejected").inc()
            log.error(
                "config.reload_failed",
                path=self.config_path,
                errors=exc.errors,
                kept="the running configuration",
            )
        else:
            tls = await asyncio.to_thread(self.gateway.prepare_tls, new)
            applied, needs_restart = self.gateway.apply_config(new, tls)
            self.gateway.metrics.config_reloads.labels("ok").inc()
            log.info(
                "config.reloaded",
                path=self.config_path,
                applied=applied,
                needs_restart=needs_restart,
            )
        self.notifier.notify("READY=1", _status(self.gateway))

    # --- watching -----------------------------------------------------------------------------

    def _update_status(self) -> None:
        self.notifier.notify(_status(self.gateway))

    def _on_failure(self, reason: str) -> None:
        self.notifier.notify(f"STATUS=failed: {reason}")
        self._stop.set()

    async def _check_listeners(self) -> None:
        while self.gateway.failure is None:
            self.gateway.check_listeners()
            await asyncio.sleep(LISTENER_CHECK_S)

    async def _watchdog(self, interval: float) -> None:
        while self.gateway.failure is None:
            self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
