"""Digest authentication of inbound INVITEs (RFC 3261 §22.4, RFC 7616 with qop=auth,
SHA-256 and MD5 per RFC 8760).

For PBXs that send credentials: the INVITE without (valid) ones gets 401 with one challenge
per algorithm, most preferred first (RFC 8760 §2.4); the retried INVITE is checked against
the configured users.

Nonces are stateless until used: a timestamp, a random part and their HMAC, under a key made
at start-up, over the address the challenge was sent to. A challenge costs no memory, a
restarted gateway simply challenges again (stale=true, as for any nonce it did not issue
to that address: the password is not even checked then, so this answer says nothing about
it). Credentials built on a nonce issued to this very address prove the sender receives our
packets there: only those count as failures towards a block (blocklist.py), so a forger
cannot get a PBX blocked by spoofing its address. Once credentials are accepted, the nonce's
count (nc) is remembered until the nonce expires: the same Authorization sent again is
refused (RFC 7616 §3.3).

The digest itself is computed with aiosipua's client-side code, so both directions share
one implementation of the hash. Every field is checked for its shape before use: a header
from the network with non-ASCII text, a missing cnonce or a count that is not 8 hex digits
gets a 4xx, never an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiosipua import SipRequest
from aiosipua.auth import SipDigestAuth, build_credentials
from aiosipua.headers import AuthChallenge, parse_auth

NONCE_TTL_S = 300
ALGORITHMS = ("SHA-256", "MD5")  # the ones we can verify, most preferred first
MAX_NONCES = 10_000  # nonces whose count is remembered; past that the oldest is dropped
MAX_HEADER = 2048  # a longer Authorization is not a PBX's
_RESPONSE_SHAPE = {"MD5": re.compile(r"[0-9a-f]{32}"), "SHA-256": re.compile(r"[0-9a-f]{64}")}
_NC = re.compile(r"[0-9a-fA-F]{8}")
_NONCE = re.compile(r"([0-9a-f]{1,16})\.([0-9a-f]{12})\.([0-9a-f]{32})")
_CNONCE = re.compile(r"[\x21\x23-\x7e]{1,128}")  # printable ASCII without space or quote


@dataclass(frozen=True, slots=True)
class Verdict:
    """``status`` is the answer to a refused INVITE: 401 (with challenges) or 400.
    ``failure``: a failed attempt that counts towards blocking the source."""

    ok: bool
    user: str | None = None
    reason: str = ""
    stale: bool = False
    status: int = 401
    failure: bool = False


class DigestVerifier:
    def __init__(
        self,
        realm: str,
        users: dict[str, str],
        *,
        algorithms: Sequence[str] = ALGORITHMS,
        nonce_ttl_s: float = NONCE_TTL_S,
        max_nonces: int = MAX_NONCES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(f"digest algorithms must be among {ALGORITHMS}, got {algorithms}")
        self.realm = realm
        self.algorithms = tuple(algorithms)
        self._users = users
        self._ttl = nonce_ttl_s
        self._clock = clock
        self._key = secrets.token_bytes(32)
        # Accepted nonces -> (issue time, highest nc accepted), in the order first accepted.
        self._counts: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._max_nonces = max_nonces
        # Issue time of the newest nonce dropped from _counts before it expired: an untracked
        # nonce issued at or before it may have been used already, so it is treated as stale.
        self._forgotten_up_to = -1

    def challenges(self, source: str, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate values, one per algorithm in order of preference, sharing a
        fresh nonce issued to ``source`` (the requester's IP address)."""
        nonce = self._nonce(source)
        tail = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={a}, qop="auth"{tail}'
            for a in self.algorithms
        ]

    def verify(self, request: SipRequest, source: str) -> Verdict:
        """Check the request's Authorization; ``source`` is the IP address it came from."""
        p = _read_credentials(request.get_header("authorization"))
        if isinstance(p, Verdict):
            return p
        user = p.get("username", "")
        nonce = p.get("nonce", "")
        issued = self._issued_at(nonce, source)  # None: not a nonce we gave this source

        def refused(reason: str, status: int = 401) -> Verdict:
            return Verdict(False, user, reason, status=status, failure=issued is not None)

        algorithm = _shape(p, self.realm, self.algorithms)
        if isinstance(algorithm, tuple):
            return refused(*algorithm)
        if issued is None:
            # Checked before the password: otherwise "stale" would tell a guesser using
            # nonces of its own making which guess was right, and none would count.
            return Verdict(False, user, "nonce not issued here or to this address", stale=True)
        password = self._users.get(user)
        if password is None:
            return refused("unknown user")
        if not self._digest_matches(request, p, password, algorithm):
            return refused("wrong password or digest")
        if p.get("uri") != request.uri:
            # RFC 7616 §3.4.6: the credentials were made for another request.
            return refused("digest uri is not the Request-URI", 400)
        return self._count(user, nonce, issued, int(p["nc"], 16))

    def _digest_matches(
        self, request: SipRequest, p: dict[str, str], password: str, algorithm: str
    ) -> bool:
        """Whether the response is the one the user's password gives (compared in constant
        time), computed by aiosipua's client code."""
        expected = build_credentials(
            SipDigestAuth(p.get("username", ""), password),
            AuthChallenge(
                scheme="Digest",
                params={
                    "realm": self.realm,
                    "nonce": p.get("nonce", ""),
                    "algorithm": algorithm,
                    "qop": "auth",
                },
            ),
            request.method,
            p.get("uri", ""),
            nonce_count=int(p["nc"], 16),
            cnonce=p["cnonce"],
        )
        offered = p.get("response", "").lower()
        return expected is not None and hmac.compare_digest(
            expected.params["response"].encode(), offered.encode()
        )

    def _count(self, user: str, nonce: str, issued: int, nc: int) -> Verdict:
        """Accept credentials whose nonce is fresh and whose count is above the last one
        accepted with it (RFC 7616 §3.3): the same Authorization twice is a replay."""
        now = self._clock()
        if not 0 <= now - issued <= self._ttl:
            return Verdict(False, user, "nonce expired", stale=True)
        self._forget_expired(now)
        seen = self._counts.get(nonce)
        if seen is None and issued <= self._forgotten_up_to:
            return Verdict(False, user, "nonce no longer tracked", stale=True)
        if seen is not None and nc <= seen[1]:
            return Verdict(False, user, "replayed nonce count", failure=True)
        self._counts[nonce] = (issued, nc)
        while len(self._counts) > self._max_nonces:
            _, (dropped, _) = self._counts.popitem(last=False)
            self._forgotten_up_to = max(self._forgotten_up_to, dropped)
        return Verdict(True, user)

    # --- nonces -----------------------------------------------------------------------------

    def _nonce(self, source: str) -> str:
        head = f"{int(self._clock()):x}.{secrets.token_hex(6)}"
        return f"{head}.{self._sign(head, source)}"

    def _sign(self, head: str, source: str) -> str:
        data = f"{head}|{source}".encode(errors="replace")
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:32]

    def _issued_at(self, nonce: str, source: str) -> int | None:
        """When the nonce was issued, if this gateway issued it to ``source``."""
        match = _NONCE.fullmatch(nonce)
        if match is None:
            return None
        head = f"{match[1]}.{match[2]}"
        if not hmac.compare_digest(self._sign(head, source).encode(), match[3].encode()):
            return None
        return int(match[1], 16)

    def _forget_expired(self, now: float) -> None:
        while self._counts:
            issued, _ = next(iter(self._counts.values()))
            if now - issued <= self._ttl:
                return
            self._counts.popitem(last=False)


def _read_credentials(header: str | None) -> dict[str, str] | Verdict:
    """The Digest parameters of an Authorization header (names lower-cased), or the Verdict
    for a header that is missing, too long, unreadable or not Digest."""
    if not header:
        return Verdict(False, reason="no credentials")
    if len(header) > MAX_HEADER:
        return Verdict(False, reason="Authorization header too long", status=400)
    try:
        creds = parse_auth(header, credentials=True)
    except (ValueError, IndexError):
        return Verdict(False, reason="unreadable Authorization header", status=400)
    if creds.scheme.lower() != "digest":
        return Verdict(False, reason="not Digest credentials")
    return {k.strip().lower(): v for k, v in creds.params.items()}


def _shape(p: dict[str, str], realm: str, algorithms: Sequence[str]) -> str | tuple[str, int]:
    """The algorithm of well-shaped credentials, or why they are refused and with which
    status: each field is checked for its shape before any is used."""
    if p.get("realm") != realm:
        return "wrong realm", 401
    qop = p.get("qop")
    if qop is None:
        return "no qop: credentials without qop=auth are refused (downgrade)", 401
    if qop.lower() != "auth":
        return "qop other than auth", 401
    algorithm = _algorithm(p.get("algorithm", "MD5"), algorithms)
    if algorithm is None:
        return "algorithm not offered", 401
    if not _NC.fullmatch(p.get("nc", "")):
        return "malformed credentials: nc is not 8 hex digits", 400
    if not _CNONCE.fullmatch(p.get("cnonce", "")):
        return "malformed credentials: cnonce missing or not a token", 400
    if not _RESPONSE_SHAPE[algorithm].fullmatch(p.get("response", "").lower()):
        return f"malformed credentials: response is not a {algorithm} digest", 400
    return algorithm


def _algorithm(name: str, offered: Sequence[str]) -> str | None:
    """The offered algorithm a credential names (the token is case-insensitive)."""
    for algorithm in offered:
        if name.upper() == algorithm:
            return algorithm
    return None
