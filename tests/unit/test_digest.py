"""Digest verification of INVITEs: RFC 7616 test vectors, SHA-256 and MD5 (RFC 8760), replayed
nonce counts, the digest uri, qop downgrade, nonces bound to the address they were sent to,
and hostile field contents that must give a 4xx verdict, never an exception.

Credentials are computed here by an oracle written from RFC 7616 §3.4.1, independent of the
aiosipua code the verifier uses.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from aiosipua import SipRequest

from gateway.sip.digest import DigestVerifier, Verdict

REALM, USER, PASSWORD = "gw.test", "asterisk", "s3cret"
URI = "sip:echo@192.0.2.10:5060"
PBX, OTHER = "192.0.2.1", "192.0.2.99"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def response(
    algorithm: str,
    nonce: str,
    nc: str,
    cnonce: str,
    *,
    user: str = USER,
    realm: str = REALM,
    password: str = PASSWORD,
    method: str = "INVITE",
    uri: str = URI,
) -> str:
    def h(text: str) -> str:
        name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]
        return hashlib.new(name, text.encode()).hexdigest()

    ha1, ha2 = h(f"{user}:{realm}:{password}"), h(f"{method}:{uri}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


def authorization(
    nonce: str,
    *,
    algorithm: str = "SHA-256",
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
    uri: str = URI,
    password: str = PASSWORD,
    user: str = USER,
    qop: str | None = "auth",
) -> str:
    digest = response(algorithm, nonce, nc, cnonce, user=user, uri=uri, password=password)
    if qop is None:  # RFC 2069 style: no qop, nc or cnonce
        ha1 = hashlib.md5(f"{user}:{REALM}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"INVITE:{uri}".encode()).hexdigest()
        digest = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        return (
            f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
            f'response="{digest}", algorithm={algorithm}'
        )
    return (
        f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{digest}", algorithm={algorithm}, qop={qop}, nc={nc}, cnonce="{cnonce}"'
    )


def invite(auth: str | None, *, uri: str = URI, method: str = "INVITE") -> SipRequest:
    request = SipRequest(method=method, uri=uri)
    if auth is not None:
        request.headers.set_single("Authorization", auth)
    return request


def nonce_of(challenge: str) -> str:
    match = re.search(r'nonce="([^"]+)"', challenge)
    assert match is not None
    return match[1]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(clock: Clock) -> DigestVerifier:
    return DigestVerifier(REALM, {USER: PASSWORD}, clock=clock)


def test_challenges_offer_sha256_then_md5_with_one_nonce(verifier: DigestVerifier) -> None:
    sha, md5 = verifier.challenges(PBX)
    assert sha.startswith("Digest ") and "algorithm=SHA-256" in sha and 'qop="auth"' in sha
    assert "algorithm=MD5" in md5 and nonce_of(sha) == nonce_of(md5)
    assert f'realm="{REALM}"' in sha and "stale" not in sha
    assert "stale=true" in verifier.challenges(PBX, stale=True)[0]
    assert nonce_of(verifier.challenges(PBX)[0]) != nonce_of(sha)  # unique per challenge
    md5_only = DigestVerifier(REALM, {USER: PASSWORD}, algorithms=["MD5"])
    assert [c.split("algorithm=")[1][:3] for c in md5_only.challenges(PBX)] == ["MD5"]


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_right_credentials_are_accepted_with_either_algorithm(
    verifier: DigestVerifier, algorithm: str
) -> None:
    nonce = nonce_of(verifier.challenges(PBX)[0])
    verdict = verifier.verify(invite(authorization(nonce, algorithm=algorithm)), PBX)
    assert verdict == Verdict(True, USER)


def test_an_algorithm_not_offered_is_refused(clock: Clock) -> None:
    md5_only = DigestVerifier(REALM, {USER: PASSWORD}, algorithms=["MD5"], clock=clock)
    nonce = nonce_of(md5_only.challenges(PBX)[0])
    verdict = md5_only.verify(invite(authorization(nonce, algorithm="SHA-256")), PBX)
    assert not verdict.ok and verdict.reason == "algorithm not offered" and verdict.failure


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_examples_verify(algorithm: str, digest: str) -> None:
    """RFC 7616 §3.9.1's worked example (its nonce taken as one we issued just now)."""

    class Issued(DigestVerifier):
        def _issued_at(self, nonce: str, source: str) -> int | None:
            return int(self._clock())

    verifier = Issued("http-auth@example.org", {"Mufasa": "Circle of Life"})
    request = SipRequest(method="GET", uri="/dir/index.html")

    def creds(value: str) -> str:
        return (
            'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
            f'algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
            'nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
            f'response="{value}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
        )

    request.headers.set_single("Authorization", creds(digest))
    assert verifier.verify(request, PBX) == Verdict(True, "Mufasa")
    request.headers.set_single("Authorization", creds(digest[::-1]))
    verdict = verifier.verify(request, PBX)
    assert (verdict.ok, verdict.reason) == (False, "wrong password or digest")


def test_a_replayed_nonce_count_is_refused(verifier: DigestVerifier) -> None:
    nonce = nonce_of(verifier.challenges(PBX)[0])
    first = authorization(nonce, nc="00000001")
    assert verifier.verify(invite(first), PBX).ok
    again = verifier.verify(invite(first), PBX)
    assert (again.ok, again.status, again.reason, again.failure) == (
        False,
        401,
        "replayed nonce count",
        True,
    )
    assert verifier.verify(invite(authorization(nonce, nc="00000003", cnonce="b")), PBX).ok
    lower = verifier.verify(invite(authorization(nonce, nc="00000002", cnonce="c")), PBX)
    assert lower.reason == "replayed nonce count"


def test_the_digest_uri_must_be_the_request_uri(verifier: DigestVerifier) -> None:
    nonce = nonce_of(verifier.challenges(PBX)[0])
    other = "sip:premium@192.0.2.10:5060"
    verdict = verifier.verify(invite(authorization(nonce, uri=other)), PBX)
    assert (verdict.ok, verdict.status, verdict.failure) == (False, 400, True)
    assert verdict.reason == "digest uri is not the Request-URI"
    # The same credentials on the request they were made for still pass (nc not spent).
    assert verifier.verify(invite(authorization(nonce, uri=other), uri=other), PBX).ok


def test_credentials_without_qop_are_a_refused_downgrade(verifier: DigestVerifier) -> None:
    nonce = nonce_of(verifier.challenges(PBX)[0])
    verdict = verifier.verify(invite(authorization(nonce, algorithm="MD5", qop=None)), PBX)
    assert not verdict.ok and "downgrade" in verdict.reason and verdict.failure
    assert verdict.status == 401


def test_missing_cnonce_or_a_bad_count_is_malformed(verifier: DigestVerifier) -> None:
    nonce = nonce_of(verifier.challenges(PBX)[0])
    no_cnonce = re.sub(r', cnonce="[^"]*"', "", authorization(nonce))
    for auth in (no_cnonce, authorization(nonce, nc="1"), authorization(nonce, nc="0000000g")):
        verdict = verifier.verify(invite(auth), PBX)
        assert (verdict.ok, verdict.status, verdict.failure) == (False, 400, True), auth


def test_wrong_password_and_unknown_user_count_as_failures(verifier: DigestVerifier) -> None:
    nonce = nonce_of(verifier.challenges(PBX)[0])
    wrong = verifier.verify(invite(authorization(nonce, password="guess")), PBX)
    assert (wrong.reason, wrong.status, wrong.failure) == ("wrong password or digest", 401, True)
    unknown = verifier.verify(invite(authorization(nonce, user="admin")), PBX)
    assert (unknown.reason, unknown.failure) == ("unknown user", True)
    none = verifier.verify(invite(None), PBX)
    assert (none.reason, none.failure) == ("no credentials", False)


def test_a_nonce_is_bound_to_the_address_it_was_sent_to(verifier: DigestVerifier) -> None:
    """A nonce obtained by one host and used from another (or made up): a fresh challenge
    (stale), whatever the password. A guess there does not count against the address it
    claims (spoofing cannot get a PBX blocked), and the answer says nothing about the
    password (no uncounted oracle)."""
    for nonce in (nonce_of(verifier.challenges(OTHER)[0]), "6b13c5ce.a3c6256f3281." + "0" * 32):
        guess = verifier.verify(invite(authorization(nonce, password="guess")), PBX)
        right = verifier.verify(invite(authorization(nonce)), PBX)
        assert guess == right
        assert (right.ok, right.stale, right.failure, right.status) == (False, True, False, 401)


def test_an_expired_nonce_is_stale_and_its_counts_are_forgotten(
    verifier: DigestVerifier, clock: Clock
) -> None:
    nonce = nonce_of(verifier.challenges(PBX)[0])
    assert verifier.verify(invite(authorization(nonce)), PBX).ok
    clock.now += 301
    late = verifier.verify(invite(authorization(nonce, nc="00000002")), PBX)
    assert (late.ok, late.stale, late.failure) == (False, True, False)
    fresh = nonce_of(verifier.challenges(PBX)[0])
    assert verifier.verify(invite(authorization(fresh)), PBX).ok
    assert len(verifier._counts) == 1  # the expired nonce's entry is gone


def test_a_nonce_whose_timestamp_was_moved_forward_is_not_ours(
    verifier: DigestVerifier, clock: Clock
) -> None:
    """The timestamp is only believed under its HMAC: a caller who sets it to now cannot
    make an expired nonce (or any nonce) live longer, whatever the password."""
    nonce = nonce_of(verifier.challenges(PBX)[0])
    clock.now += 301
    _, rest = nonce.split(".", 1)
    forged = f"{int(clock.now):x}.{rest}"
    assert forged != nonce
    verdict = verifier.verify(invite(authorization(forged)), PBX)
    assert (verdict.ok, verdict.stale, verdict.failure, verdict.reason) == (
        False,
        True,
        False,
        "nonce not issued here or to this address",
    ), f"a nonce with a rewritten timestamp got {verdict}"


@pytest.mark.parametrize("age_s", [301, 86_400 * 365])
def test_a_nonce_never_used_expires_too(verifier: DigestVerifier, clock: Clock, age_s: int) -> None:
    """The right password on a nonce issued longer ago than its lifetime: a fresh challenge
    (stale), not a call; one second inside the lifetime it still passes."""
    old = nonce_of(verifier.challenges(PBX)[0])
    clock.now += 299
    young = nonce_of(verifier.challenges(PBX)[0])
    clock.now += age_s - 299
    late = verifier.verify(invite(authorization(old)), PBX)
    assert (late.ok, late.stale, late.reason) == (False, True, "nonce expired"), (
        f"a {age_s} s old nonce got {late}"
    )
    if age_s == 301:
        assert verifier.verify(invite(authorization(young)), PBX).ok


def test_the_nonce_table_is_bounded_without_opening_a_replay(clock: Clock) -> None:
    verifier = DigestVerifier(REALM, {USER: PASSWORD}, max_nonces=2, clock=clock)
    nonces = [nonce_of(verifier.challenges(PBX)[0]) for _ in range(3)]
    for nonce in nonces:
        assert verifier.verify(invite(authorization(nonce)), PBX).ok
    assert len(verifier._counts) == 2
    # The first nonce's count was dropped: it cannot be replayed, only refreshed.
    replay = verifier.verify(invite(authorization(nonces[0])), PBX)
    assert (replay.ok, replay.stale) == (False, True)


HOSTILE = [
    'Digest username="asterisk", realm="gw.test", nonce="6b13c5ce.a3c6\ufffd", '
    'uri="sip:echo@192.0.2.10:5060", response="00", qop=auth, nc=00000001, cnonce="x"',
    'Digest username="ast\u00e9risk", realm="gw.test", nonce="{nonce}", '
    'uri="sip:echo@192.0.2.10:5060", response="{digest}", qop=auth, nc=00000001, cnonce="x"',
    'Digest username="asterisk", realm="gw.t\u00e9st", nonce="{nonce}", '
    'uri="sip:echo@192.0.2.10:5060", response="{digest}", qop=auth, nc=00000001, cnonce="x"',
    'Digest username="asterisk", realm="gw.test", nonce="{nonce}", '
    'uri="sip:\u00e9cho@192.0.2.10:5060", response="{digest}", qop=auth, nc=00000001, cnonce="x"',
    'Digest username="asterisk", realm="gw.test", nonce="{nonce}", '
    'uri="sip:echo@192.0.2.10:5060", response="\u00e9{digest}", qop=auth, nc=00000001, cnonce="x"',
    'Digest username="asterisk", realm="gw.test", nonce="{nonce}", '
    'uri="sip:echo@192.0.2.10:5060", response="{digest}", qop=auth, nc=00000001, cnonce="\u00e9"',
    # Arabic-Indic digits: int(..., 16) would read them as 00000001.
    'Digest username="asterisk", realm="gw.test", nonce="{nonce}", '
    'uri="sip:echo@192.0.2.10:5060", response="{digest}", qop=auth, '
    'nc=\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0661, cnonce="x"',
    'Digest username="asterisk", realm="gw.test", nonce="{nonce}", '
    'uri="sip:echo@192.0.2.10:5060", response="{digest}", qop=\u00e0uth, nc=00000001, cnonce="x"',
    'Digest username="asterisk", realm="gw.test", nonce="{nonce}", '
    'uri="sip:echo@192.0.2.10:5060", response="{digest}", qop=auth, nc=00000001, cnonce="x", '
    "algorithm=SH\u00c4-256",
    "Digest \ufffd\ufffd\ufffd",
    "Digest " + "a=" * 5000,
    "\u00c9igest username=x",
    'Digest username="asterisk", nonce="{nonce}" ,,,, =, ="", response',
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_credentials_get_a_4xx_verdict_never_an_exception(
    verifier: DigestVerifier, template: str
) -> None:
    nonce = nonce_of(verifier.challenges(PBX)[0])
    digest = response("MD5", nonce, "00000001", "x")
    auth = template.replace("{nonce}", nonce).replace("{digest}", digest)
    verdict = verifier.verify(invite(auth), PBX)
    assert not verdict.ok and verdict.status in (400, 401)
