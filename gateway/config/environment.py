"""The environment a whole config relies on: which variables it names, whether they are set
and usable, and their values (API key, SIP passwords).

It sits above the schema (it takes a :class:`GatewayConfig`), while :mod:`secrets` keeps the
name checks the sections use as they parse: so neither imports the other's layer. No message
built here ever contains a secret value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .schema import GatewayConfig
from .secrets import SecretError, decode_secret


def _needs_api_key(cfg: GatewayConfig) -> bool:
    return not cfg.realtime.embedded and cfg.realtime.auth.method in ("api_key", "bearer")


def check_environment(cfg: GatewayConfig, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Problems with the environment the config relies on; empty when all is well.

    Never includes a secret value.
    """
    problems: list[str] = []
    if _needs_api_key(cfg):
        name = cfg.realtime.auth.api_key_env
        value = environ.get(name)
        if value is None:
            problems.append(f"realtime.auth.api_key_env: environment variable {name} is not set")
        elif not value.strip():
            problems.append(f"realtime.auth.api_key_env: environment variable {name} is empty")
    for path, name in _sip_password_envs(cfg):
        if not environ.get(name, "").strip():
            problems.append(f"{path}: environment variable {name} is not set or empty")
    if cfg.api is not None and cfg.api.token_env is not None:
        name = cfg.api.token_env
        if len(environ.get(name, "").strip()) < MIN_API_TOKEN_CHARS:
            problems.append(
                f"api.token_env: environment variable {name} is not set or shorter than "
                f"{MIN_API_TOKEN_CHARS} characters"
            )
    for path, name in _mcp_header_envs(cfg):
        if not environ.get(name, "").strip():
            problems.append(f"{path}: environment variable {name} is not set or empty")
    for path, name in _hook_secret_envs(cfg):
        value = environ.get(name, "").strip()
        if not value:
            problems.append(f"{path}: environment variable {name} is not set or empty")
            continue
        try:
            decode_secret(value)
        except SecretError as exc:
            problems.append(f"{path}: environment variable {name}: {exc}")
    return problems


def _mcp_header_envs(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """(config path, variable name) of every MCP server header the config relies on."""
    agents = [("agent", cfg.agent), *((f"profiles.{n}", p) for n, p in cfg.profiles.items())]
    return [
        (f"{where}.tools[{i}].headers_from_env.{header}", name)
        for where, agent in agents
        for i, tool in enumerate(agent.tools)
        if tool.type == "mcp"
        for header, name in tool.headers_from_env.items()
    ]


MIN_API_TOKEN_CHARS = 16


def api_token(cfg: GatewayConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The control API's bearer token; None when the API has none (loopback only)."""
    if cfg.api is None or cfg.api.token_env is None:
        return None
    return environ.get(cfg.api.token_env, "").strip() or None


def _hook_secret_envs(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """(config path, variable name) of every webhook signing secret the config relies on."""
    found = []
    for key in ("call_incoming", "events"):
        hook = getattr(cfg.hooks, key)
        if hook is not None and hook.secret_env is not None:
            found.append((f"hooks.{key}.secret_env", hook.secret_env))
    return found


def _sip_password_envs(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """(config path, variable name) of every SIP password the config relies on."""
    found = []
    if cfg.sip.auth is not None:
        for i, user in enumerate(cfg.sip.auth.users):
            found.append((f"sip.auth.users[{i}].password_env", user.password_env))
    if cfg.sip.registration is not None:
        found.append(("sip.register.password_env", cfg.sip.registration.password_env))
    return found


def sip_passwords(
    cfg: GatewayConfig, environ: Mapping[str, str] = os.environ
) -> tuple[dict[str, str], str | None]:
    """The inbound users' passwords by user name, and the registration password.

    Unset variables are left out (check_environment() names them).
    """
    users: dict[str, str] = {}
    if cfg.sip.auth is not None:
        for user in cfg.sip.auth.users:
            if environ.get(user.password_env):
                users[user.username] = environ[user.password_env]
    register = None
    if cfg.sip.registration is not None:
        register = environ.get(cfg.sip.registration.password_env) or None
    return users, register


def api_key(cfg: GatewayConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The API key from the environment variable the config names.

    None when auth is neither api_key nor bearer, when the url is embedded, or when the
    variable is unset or empty (check_environment() reports that case).
    """
    if not _needs_api_key(cfg):
        return None
    value = environ.get(cfg.realtime.auth.api_key_env, "").strip()
    return value or None
