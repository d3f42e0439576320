"""Standard Webhooks signatures (https://www.standardwebhooks.com), so that a receiver can check
a request with any of that specification's libraries.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is
``v1,`` and the base64 of its HMAC-SHA256 under the secret. The secret is written as the
specification's libraries write it, ``whsec_`` and base64 (the prefix may be left out).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"


class SecretError(ValueError):
    """The secret is not in the specification's form; the message never contains it."""


def decode_secret(text: str) -> bytes:
    """The key bytes of a secret written ``whsec_<base64>`` (or bare base64)."""
    body = text.strip().removeprefix(SECRET_PREFIX)
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


def new_message_id() -> str:
    """A fresh ``webhook-id``: stable across the retries of one message, unique across them."""
    return "msg_" + secrets.token_urlsafe(18)


class Signer:
    """Signs request bodies with one secret."""

    def __init__(self, secret: str) -> None:
        self._key = decode_secret(secret)

    def signature(self, message_id: str, timestamp: int, body: bytes) -> str:
        signed = f"{message_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode("ascii")

    def headers(self, message_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
        """The three headers of one delivery attempt (the timestamp is the attempt's)."""
        timestamp = int(time.time() if now is None else now)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(message_id, timestamp, body),
        }


def unsigned_headers(message_id: str, now: float | None = None) -> dict[str, str]:
    """The id and timestamp headers alone, for a hook configured without a secret."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(time.time() if now is None else now)),
    }
