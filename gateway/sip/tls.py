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

from aiosipua.header_codec import parse_uri

from .addresses import valid_host, valid_port


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
    context.options |= ssl.OP_NO_RENEGOTIATION  # a TLS 1.2 peer renegotiating costs us CPU
    _load_pair(context, settings)
    if settings.verify_peer:
        if settings.ca_file is None:
            raise TlsSetupError("verify_peer needs ca_file")
        try:
            context.load_verify_locations(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise _ca_error(settings, exc) from None
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_pair(context: ssl.SSLContext, settings: TlsSettings) -> None:
    """Our certificate and key into `context`; TlsSetupError with the reason, no key bytes."""
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    except ssl.SSLError as exc:  # KEY_VALUES_MISMATCH, PEM_LIB (not a PEM file), ...
        raise TlsSetupError(
            f"certificate {settings.cert_file} / key {settings.key_file}: {_reason(exc)}"
        ) from None
    except OSError as exc:  # missing, unreadable
        raise TlsSetupError(f"certificate or key: {exc.strerror or exc}: {exc.filename}") from None


def _ca_error(settings: TlsSettings, exc: OSError | ssl.SSLError) -> TlsSetupError:
    why = _reason(exc) if isinstance(exc, ssl.SSLError) else exc.strerror or str(exc)
    return TlsSetupError(f"ca_file {settings.ca_file}: {why}")


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


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context for connections the gateway opens (an in-dialog request whose connection
    is gone): the peer's certificate must chain to ca_file (the system's CAs without one) and
    match the name it is reached by; ours is presented to peers that ask for it."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise _ca_error(settings, exc) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(context, settings)
    return context


def reconnect_target(remote_target: str, source_ip: str) -> tuple[tuple[str, int], str]:
    """Where a new TLS connection to a dialog's peer goes, and the name its certificate must
    carry (sent as SNI when it is a name). The address is the IP the peer's own connection
    came from (admitted by sip.allow_from), never a name from its Contact resolved: a forged
    Contact can choose a port of that host and the name checked, not a third party.
    Raises ValueError for a target that cannot be used."""
    try:
        uri = parse_uri(remote_target)
    except (ValueError, IndexError, TypeError, AttributeError):
        raise ValueError(f"unreadable URI {remote_target[:80]!r}") from None
    if uri.scheme.lower() not in ("sip", "sips"):
        raise ValueError(f"not a sip: or sips: URI: {remote_target[:80]!r}")
    host = uri.host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = uri.port if uri.port is not None else 5061
    if not valid_host(host) or not valid_port(port):
        raise ValueError(f"bad host or port in {remote_target[:80]!r}")
    return (source_ip, port), host
