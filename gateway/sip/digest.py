"""Digest authentication of inbound INVITEs (RFC 3261 §22.4, RFC 7616 with qop=auth).

For PBXs that send credentials: the INVITE without (valid) ones gets 401 with a
challenge, the retried INVITE is checked against the configured users. Nonces are
stateless (a timestamp and its HMAC under a key made at start-up), so a challenge
costs no memory and a restarted gateway simply challenges again (stale=true).
The expected response is computed with aiosipua's client-side digest, so both
directions share one implementation of the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiosipua import SipRequest
from aiosipua.auth import SipDigestAuth, build_credentials
from aiosipua.headers import AuthChallenge, parse_auth

NONCE_TTL_S = 300


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    user: str | None = None
    reason: str = ""
    stale: bool = False


class DigestVerifier:
    def __init__(
        self,
        realm: str,
        users: dict[str, str],
        *,
        nonce_ttl_s: float = NONCE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.realm = realm
        self._users = users
        self._ttl = nonce_ttl_s
        self._clock = clock
        self._key = secrets.token_bytes(32)

    def challenge(self, *, stale: bool = False) -> str:
        """A WWW-Authenticate value with a fresh nonce."""
        value = f'Digest realm="{self.realm}", nonce="{self._nonce()}", algorithm=MD5, qop="auth"'
        return value + (", stale=true" if stale else "")

    def verify(self, request: SipRequest) -> Verdict:
        header = request.get_header("authorization")
        if not header:
            return Verdict(False, reason="no credentials")
        try:
            creds = parse_auth(header, credentials=True)
        except (ValueError, IndexError):
            return Verdict(False, reason="unreadable Authorization header")
        p = creds.params
        user = p.get("username", "")
        if creds.scheme.lower() != "digest" or p.get("realm") != self.realm:
            return Verdict(False, user, "wrong scheme or realm")
        password = self._users.get(user)
        if password is None:
            return Verdict(False, user, "unknown user")
        nonce = p.get("nonce", "")
        if not self._nonce_signed(nonce):
            return Verdict(False, user, "nonce not issued here")
        qop = p.get("qop")
        challenge = AuthChallenge(
            scheme="Digest",
            params={
                "realm": self.realm,
                "nonce": nonce,
                "algorithm": p.get("algorithm", "MD5"),
                **({"qop": "auth"} if qop else {}),
            },
        )
        try:
            nc = int(p.get("nc", "1"), 16)
        except ValueError:
            return Verdict(False, user, "bad nonce count")
        if qop not in (None, "auth"):
            return Verdict(False, user, f"qop {qop} not offered")
        expected = build_credentials(
            SipDigestAuth(user, password),
            challenge,
            request.method,
            p.get("uri", ""),
            nonce_count=nc,
            cnonce=p.get("cnonce"),
        )
        offered = p.get("response", "")
        if expected is None or not hmac.compare_digest(expected.params["response"], offered):
            return Verdict(False, user, "wrong password or digest")
        if not self._nonce_fresh(nonce):
            return Verdict(False, user, "nonce expired", stale=True)
        return Verdict(True, user)

    def _nonce(self) -> str:
        stamp = f"{int(self._clock()):x}"
        return f"{stamp}.{self._sign(stamp)}"

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def _nonce_signed(self, nonce: str) -> bool:
        stamp, _, mac = nonce.partition(".")
        return bool(stamp) and hmac.compare_digest(self._sign(stamp), mac)

    def _nonce_fresh(self, nonce: str) -> bool:
        try:
            issued = int(nonce.partition(".")[0], 16)
        except ValueError:
            return False
        return 0 <= self._clock() - issued <= self._ttl
