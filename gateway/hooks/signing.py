"""Standard Webhooks signatures (https://www.standardwebhooks.com), so that a receiver can check
a request with any of that specification's libraries.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is
``v1,`` and the base64 of its HMAC-SHA256 under the secret. The secret is written as the
specification's libraries write it, ``whsec_`` and base64 (the prefix may be left out;
:func:`gateway.config.secrets.decode_secret` reads it, so that ``check-config`` can too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from ..config.secrets import SecretError, decode_secret

__all__ = ["SecretError", "Signer", "decode_secret", "new_message_id", "unsigned_headers"]


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
