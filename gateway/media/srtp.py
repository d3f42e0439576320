"""SRTP with keys exchanged in SDP (SDES, RFC 4568), on libsrtp through ``pylibsrtp``.

Sans-I/O: the SDP side parses and writes ``a=crypto`` lines (``CryptoAttribute``) and picks a
suite by our preference; ``SrtpSession`` protects what we send and unprotects what we hear,
one libsrtp session per direction. libsrtp keeps the replay window (RFC 3711 §3.3.2) and
checks the authentication tag; a packet that fails either is reported as ``SrtpDropped``, for
the stream to drop and count.

Keys are secrets: no ``repr``, message or exception here ever contains one (the tests grep
the gateway's log for the key).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field

import pylibsrtp
from pylibsrtp import Policy

__all__ = [
    "SUITES",
    "BadCrypto",
    "CryptoAttribute",
    "SrtpDropped",
    "SrtpSession",
    "Suite",
    "available_suites",
    "parse_crypto",
]


@dataclass(frozen=True, slots=True)
class Suite:
    """One crypto-suite of RFC 4568 §6.2 / RFC 7714 §14.2: its libsrtp profile and the
    length of its master key plus salt (what ``inline:`` carries, base64)."""

    name: str
    profile: int
    key_len: int


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("AES_CM_128_HMAC_SHA1_80", Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
        Suite("AES_CM_128_HMAC_SHA1_32", Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30),
        Suite("AEAD_AES_128_GCM", Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
        Suite("AEAD_AES_256_GCM", Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
    )
}

_available: tuple[str, ...] | None = None


def available_suites() -> tuple[str, ...]:
    """The suites this libsrtp build can run (GCM needs libsrtp built with OpenSSL)."""
    global _available
    if _available is None:
        names = []
        for suite in SUITES.values():
            try:
                Policy(key=bytes(suite.key_len), srtp_profile=suite.profile)
            except (pylibsrtp.Error, ValueError):
                continue
            names.append(suite.name)
        _available = tuple(names)
    return _available


class BadCrypto(ValueError):
    """An ``a=crypto`` line for a suite we run whose key cannot be used (the offer gets 488).
    The message never contains the key."""


# tag SP suite SP key-params [SP session-params] (RFC 4568 §9.1)
_LINE = re.compile(r"^(\d{1,9}) +([A-Za-z0-9_]{1,64}) +(\S+)(?: +(.*))?$")
_LIFETIME = re.compile(r"^(?:2\^\d{1,2}|\d{1,20})$")
MAX_LINE = 512  # a crypto line is about 80 characters; anything longer is not one we use


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """One ``a=crypto`` line with a single inline key and no session parameters."""

    tag: int
    suite: str
    key: bytes = field(repr=False)  # master key || master salt

    def value(self) -> str:
        """The attribute's value, for ``a=crypto:``."""
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"

    @classmethod
    def generate(cls, tag: int, suite: str) -> CryptoAttribute:
        return cls(tag, suite, secrets.token_bytes(SUITES[suite].key_len))


def parse_crypto(value: str) -> CryptoAttribute | None:
    """Parse one ``a=crypto`` value. None for a line we cannot use but may ignore (a suite we
    do not know, several keys, an MKI, session parameters: RFC 4568 §7.1.1 lets the answerer
    pass over it); BadCrypto for a suite we know with a key we cannot use (wrong base64 or
    length, a bad lifetime)."""
    if len(value) > MAX_LINE:
        return None
    match = _LINE.match(value.strip())
    if match is None:
        return None
    tag_text, suite_name, key_params, session_params = match.groups()
    suite = SUITES.get(suite_name.upper())
    if suite is None or session_params:
        return None
    tag = int(tag_text)
    if ";" in key_params:  # several keys (RFC 4568 §9.2): not for us
        return None
    method, colon, info = key_params.partition(":")
    if not colon or method.lower() != "inline":
        return None
    key_text, *extras = info.split("|")
    if len(extras) > 2:
        raise BadCrypto(f"crypto tag {tag}: malformed key parameters")
    for extra in extras:
        if ":" in extra:  # MKI:length, which our sessions do not carry
            return None
        if not _LIFETIME.match(extra):
            raise BadCrypto(f"crypto tag {tag}: malformed key lifetime")
    try:
        key = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise BadCrypto(f"crypto tag {tag}: the key is not valid base64") from None
    if len(key) != suite.key_len:
        raise BadCrypto(
            f"crypto tag {tag}: {suite.name} needs a {suite.key_len}-byte key and salt, "
            f"the offer has {len(key)} bytes"
        )
    return CryptoAttribute(tag, suite.name, key)


class SrtpDropped(Exception):
    """A packet libsrtp refused: ``kind`` is ``auth`` (bad tag, forged, wrong key),
    ``replay`` (seen already, or too old for the window) or ``other``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


_REPLAY = frozenset({"replay check failed (bad index)", "replay check failed (index too old)"})
_AUTH = frozenset({"authentication failure", "cipher failure"})
MAX_SSRCS = 8  # inbound streams kept per call: a phone uses one, a PBX's transfer a few
MAX_SRTP_PACKET = 1500 - pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN  # pylibsrtp's buffer


def _kind(exc: Exception) -> str:
    text = str(exc)
    if text in _REPLAY:
        return "replay"
    if text in _AUTH:
        return "auth"
    return "other"


def _inbound(remote: CryptoAttribute) -> pylibsrtp.Session:
    profile = SUITES[remote.suite].profile
    return pylibsrtp.Session(
        Policy(key=remote.key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    )


class SrtpSession:
    """One call's SRTP: our key protects what we send, the peer's unprotects what we hear."""

    __slots__ = ("_rx", "_ssrcs", "_tx", "local", "remote", "suite")

    def __init__(self, local: CryptoAttribute, remote: CryptoAttribute) -> None:
        if local.suite != remote.suite:
            raise ValueError("both directions must use the same crypto suite")
        self.suite = local.suite
        self.local = local
        self.remote = remote
        profile = SUITES[self.suite].profile
        self._tx = pylibsrtp.Session(
            Policy(key=local.key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        )
        self._rx = _inbound(remote)
        self._ssrcs: dict[int, None] = {}  # inbound SSRCs libsrtp keeps a stream for, oldest first

    def renew_remote(self, remote: CryptoAttribute) -> None:
        """The peer re-keyed and our key stays: a new inbound session only. The outbound one
        goes on, its rollover counter with it; a new session under the same key would
        start its packet index again and repeat a keystream already used (RFC 3711 §9.1)."""
        if remote.suite != self.suite:
            raise ValueError("both directions must use the same crypto suite")
        self.remote = remote
        self._rx = _inbound(remote)
        self._ssrcs = {}

    def __repr__(self) -> str:
        return f"SrtpSession({self.suite})"

    def protect(self, packet: bytes | bytearray | memoryview) -> bytes:
        return self._tx.protect(bytes(packet))

    def unprotect(self, packet: bytes) -> bytes:
        """The RTP packet inside, or SrtpDropped."""
        if len(packet) > MAX_SRTP_PACKET:
            raise SrtpDropped("other")
        try:
            clear = self._rx.unprotect(packet)
        except pylibsrtp.Error as exc:
            raise SrtpDropped(_kind(exc)) from None
        self._seen(int.from_bytes(packet[8:12], "big"))
        return clear

    def _seen(self, ssrc: int) -> None:
        """libsrtp clones a stream (keys, replay window) for each new SSRC that
        authenticates: a peer cycling SSRCs would grow it without end. The oldest beyond
        MAX_SSRCS is removed (should it come back, it starts a new window)."""
        ssrcs = self._ssrcs
        if ssrc in ssrcs:
            return
        ssrcs[ssrc] = None
        if len(ssrcs) > MAX_SSRCS:
            oldest = next(iter(ssrcs))
            del ssrcs[oldest]
            self._rx.remove_stream(oldest)

    def protect_rtcp(self, packet: bytes | bytearray | memoryview) -> bytes:
        return self._tx.protect_rtcp(bytes(packet))

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """The RTCP packet inside, or SrtpDropped."""
        if len(packet) > MAX_SRTP_PACKET:
            raise SrtpDropped("other")
        try:
            clear = self._rx.unprotect_rtcp(packet)
        except pylibsrtp.Error as exc:
            raise SrtpDropped(_kind(exc)) from None
        self._seen(int.from_bytes(packet[4:8], "big"))
        return clear


def is_rtcp(data: bytes) -> bool:
    """RTCP multiplexed on the RTP port (RFC 5761 §4): packet types 192-223 in byte 1."""
    return len(data) > 1 and 192 <= data[1] <= 223
