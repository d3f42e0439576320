"""TLS for SIP: the server context, and whether a peer's certificate carries an allowed name.

Plain functions around the ssl module so that the checks can be tested without a socket; the
listener (`transport.TlsTransport`) calls them.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TlsSetupError(Exception):
    """A certificate, key or CA file that cannot be used (unreadable, not PEM, mismatched)."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    verify_peer: bool = False
    allowed_names: tuple[str, ...] = ()
    handshake_timeout_s: float = 10.0


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """A new server context from the files as they are now (a reload builds another one, so
    connections made with the old one keep it). TLS 1.2 and later, the ssl module's defaults."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    except ssl.SSLError as exc:
        # KEY_VALUES_MISMATCH, PEM_LIB (not a PEM file), ...: the reason only, no key bytes.
        raise TlsSetupError(
            f"certificate {settings.cert_file} / key {settings.key_file}: {_reason(exc)}"
        ) from None
    except OSError as exc:  # missing, unreadable
        raise TlsSetupError(f"certificate or key: {exc.strerror or exc}: {exc.filename}") from None
    if settings.verify_peer:
        if settings.ca_file is None:
            raise TlsSetupError("verify_peer needs ca_file")
        try:
            context.load_verify_locations(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            why = _reason(exc) if isinstance(exc, ssl.SSLError) else exc.strerror or str(exc)
            raise TlsSetupError(f"ca_file {settings.ca_file}: {why}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or type(exc).__name__)


def certificate_names(peercert: dict[str, Any] | None) -> list[str]:
    """The DNS and IP subjectAltNames and the subject CNs of a certificate as
    `SSLSocket.getpeercert()` gives it (a verified certificate; empty without one)."""
    if not peercert:
        return []
    names = [
        str(value)
        for kind, value in peercert.get("subjectAltName", ())
        if kind in ("DNS", "IP Address")
    ]
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(str(value))
    return names


def name_refusal(peercert: dict[str, Any] | None, allowed: Iterable[str]) -> str | None:
    """Why a verified peer is refused by `allowed` (None = it may talk). An empty list allows
    any certificate that chained; names compare exactly, case-insensitively."""
    wanted = {name.strip().lower() for name in allowed}
    if not wanted:
        return None
    names = certificate_names(peercert)
    if not names:
        return "peer certificate has no name"
    if any(name.lower() in wanted for name in names):
        return None
    shown = ", ".join(n[:64] for n in names[:4])
    return f"peer certificate names ({shown}) not in sip.tls.allowed_names"
