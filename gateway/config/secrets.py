"""Secrets never live in the config file: it names environment variables, and this module
checks those names, spots a secret pasted where a name belongs, and reads the values.

No message built here ever contains a secret value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .fields import _kind

if TYPE_CHECKING:  # the schema imports this module: only its type is needed here
    from .schema import GatewayConfig


SECRETS_MESSAGE = (
    "secrets are not read from the config file; "
    "set the environment variable named by realtime.auth.api_key_env"
)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _looks_like_secret_value(text: str) -> bool:
    """True for something that looks like an API key or token rather than a variable name."""
    return (
        "sk-" in text
        or text.startswith(("eyJ", "Bearer ", "bearer "))  # a JWT or an Authorization header
        # Azure keys: 32 hex digits or 84 mixed-case alphanumerics; names are UPPER_CASE
        or (
            len(text) >= 24
            and "_" not in text
            and (any(c.islower() for c in text) or sum(c.isdigit() for c in text) >= 4)
        )
    )


def _parse_env_name(value: object) -> str:
    # Never echo the value: someone may have pasted the key itself here.
    if not isinstance(value, str):
        raise ValueError(f"expected the name of an environment variable, got {_kind(value)}")
    text = value.strip()
    if _looks_like_secret_value(text):
        raise ValueError(
            "this looks like an API key itself, not the name of an environment variable: "
            "secrets are not read from the config file; put the key in an environment "
            "variable (e.g. AZURE_OPENAI_API_KEY) and write that variable's name here"
        )
    if not _ENV_NAME.match(text):
        raise ValueError(
            "must be the name of an environment variable (letters, digits and _, not starting "
            "with a digit), such as AZURE_OPENAI_API_KEY"
        )
    return text


_SECRET_PARTS = ("password", "passwd", "secret", "apikey", "credential")  # inside any key
_SECRET_WORDS = {"key", "token", "pwd", "pass", "bearer", "sig"}  # as a whole word


def _is_secret_name(key: str) -> bool:
    """Does a key (or a URL query parameter) look like it would hold a secret?

    ``api_key``, ``apiKey``, ``client_secret``, ``access_token``, ``password`` do;
    ``max_output_tokens`` or ``monkey`` do not.
    """
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    words = set(re.split(r"[^a-z0-9]+", snake))
    squashed = re.sub(r"[^a-z0-9]", "", snake)
    return any(part in squashed for part in _SECRET_PARTS) or bool(words & _SECRET_WORDS)


def _needs_api_key(cfg: GatewayConfig) -> bool:
    return not cfg.realtime.embedded and cfg.realtime.auth.method in ("api_key", "bearer")


WEBHOOK_SECRET_PREFIX = "whsec_"


class SecretError(ValueError):
    """A webhook secret not in the Standard Webhooks form; the message never contains it."""


def decode_secret(text: str) -> bytes:
    """The key bytes of a webhook secret written ``whsec_<base64>`` (or bare base64)."""
    body = text.strip().removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(
            "a webhook secret is whsec_ followed by base64 (as Standard Webhooks libraries "
            "generate it), e.g. whsec_ and 32 random bytes in base64"
        ) from None
    if len(key) < 16:
        raise SecretError("a webhook secret must hold at least 16 bytes (24 base64 characters)")
    return key


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


def _hook_secret_envs(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """(config path, variable name) of every webhook signing secret the config relies on."""
    found = []
    for key in ("call_incoming", "events"):
        hook = getattr(cfg.hooks, key)
        if hook is not None and hook.secret_env is not None:
            found.append((f"hooks.{key}.secret_env", hook.secret_env))
    return found


MIN_API_TOKEN_CHARS = 16


def api_token(cfg: GatewayConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The control API's bearer token; None when the API has none (loopback only)."""
    if cfg.api is None or cfg.api.token_env is None:
        return None
    return environ.get(cfg.api.token_env, "").strip() or None


def hook_secret(name: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """A hook's signing secret from the variable ``secret_env`` names; None when unsigned."""
    if name is None:
        return None
    return environ.get(name, "").strip() or None


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
