"""What must hold before the daemon says it is ready: credentials, writable directories, the
codecs' libraries.

Each check raises `StartupError` with a message naming the config key: the process exits
non-zero and the operator knows what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from .config import GatewayConfig, MetricsConfig, api_key, outbound_password
from .media.hold_music import HoldMusicError, read_wav
from .media.opus import load_libopus
from .metrics import Metrics, MetricsServer
from .realtime.auth import ApiKeyAuth, Auth, EntraAuth, NoAuth

log = structlog.get_logger("gateway")


class StartupError(Exception):
    """The daemon cannot start (port taken, credentials missing): exit non-zero."""


async def realtime_auth(cfg: GatewayConfig) -> Auth:
    """The credentials for the Realtime service, checked: an API key must be in the
    environment, an Entra ID token must be obtainable (NoAuth for the embedded agent)."""
    rt = cfg.realtime
    if rt.embedded:
        return NoAuth()
    if rt.auth.method in ("api_key", "bearer"):
        key = api_key(cfg)
        if not key:
            raise StartupError(
                f"realtime.auth.api_key_env: environment variable {rt.auth.api_key_env} is not set"
            )
        return ApiKeyAuth(key, env_name=rt.auth.api_key_env, bearer=rt.auth.method == "bearer")
    if rt.auth.method == "entra":
        auth = EntraAuth(rt.auth.entra_scope)
        await _check_token(auth, cfg)
        return auth
    return NoAuth()


async def _check_token(auth: Auth, cfg: GatewayConfig) -> None:
    """Entra: a token must be obtainable before the gateway says it is ready."""
    try:
        async with asyncio.timeout(cfg.realtime.connect_timeout_s):
            await auth.headers()
    except Exception as exc:  # azure-identity raises several types; none carry secrets
        await auth.close()
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        raise StartupError(
            f"realtime.auth.method entra: no token for {cfg.realtime.auth.entra_scope} "
            f"({reason}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from None


def codecs_loadable(cfg: GatewayConfig) -> None:
    """Opus in ``media.codecs`` needs the system's libopus: loaded now, or the first Opus
    call would fail at its answer instead of the daemon at its start."""
    if "opus" not in cfg.media.codecs:
        return
    try:
        load_libopus()
    except Exception as exc:  # opuslib-next raises a bare Exception when libopus is missing
        raise StartupError(
            f"media.codecs: opus needs libopus (Debian: apt-get install libopus0): {exc}"
        ) from None


def preflight(cfg: GatewayConfig, register_password: str | None) -> None:
    """What the start checks before it listens: the records' directories writable, the
    codecs loadable, the passwords named by the config present in the environment."""
    for key in ("transcripts_dir", "recordings_dir", "calls_dir"):
        writable_dir(f"records.{key}", getattr(cfg.records, key))
    codecs_loadable(cfg)
    check_outbound(cfg)
    hold_music_readable(cfg)
    if cfg.sip.registration is not None and register_password is None:
        raise StartupError(
            f"sip.register.password_env: environment variable "
            f"{cfg.sip.registration.password_env} is not set"
        )


def hold_music_readable(cfg: GatewayConfig) -> None:
    """Each agent.transfer.music_on_hold read now, once (cached): a warm transfer then reads
    no file on the call's path, and a bad file stops the start rather than a transfer."""
    agents = {"agent": cfg.agent, **{f"profiles.{k}": v for k, v in cfg.profiles.items()}}
    for key, agent in agents.items():
        path = agent.transfer.music_on_hold
        if path is None:
            continue
        try:
            read_wav(path)
        except HoldMusicError as exc:
            raise StartupError(f"{key}.transfer.music_on_hold: {exc}") from None


def check_outbound(cfg: GatewayConfig) -> None:
    """sip.outbound.auth's password is in the environment (else every challenged call would
    fail with 407 long after the start)."""
    outbound = cfg.sip.outbound
    if outbound is not None and outbound.auth is not None and outbound_password(cfg) is None:
        raise StartupError(
            f"sip.outbound.auth.password_env: environment variable "
            f"{outbound.auth.password_env} is not set"
        )


def writable_dir(key: str, directory: Path | None) -> None:
    """Create a records directory at start, or refuse to start naming the key."""
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"{key}: cannot create {directory}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StartupError(f"{key}: {directory} is not writable")
    # A process killed between writing a record's NAME.tmp and renaming it left one behind;
    # the record it was to replace is still there (durable.py).
    for stale in directory.glob("*.json.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
            log.info("records.stale_tmp_removed", path=str(stale))


async def start_metrics(
    cfg: MetricsConfig, metrics: Metrics, ready: Callable[[], bool], state: Callable[[], Any]
) -> MetricsServer | None:
    """The metrics server (/metrics, /healthz, /readyz), when enabled; StartupError when its
    port cannot be had."""
    if not cfg.enabled:
        return None
    server = MetricsServer(metrics, cfg.bind, cfg.port, ready, state, debug_state=cfg.debug_state)
    try:
        await server.start()
    except OSError as exc:
        raise StartupError(
            f"metrics: cannot listen on {cfg.bind}:{cfg.port}: {exc.strerror or exc}"
        ) from None
    return server
