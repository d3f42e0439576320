"""Secrets never live in the config file: it names environment variables, and this module
checks those names, spots a secret pasted where a name belongs, and decodes a webhook
secret. The sections use it while they parse; reading the values for a whole config is
:mod:`environment`'s (above the schema).

No message built here ever contains a secret value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping

from .fields import _kind

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


def hook_secret(name: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """A hook's signing secret from the variable ``secret_env`` names; None when unsigned."""
    if name is None:
        return None
    return environ.get(name, "").strip() or None
