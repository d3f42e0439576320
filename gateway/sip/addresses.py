"""Addresses a SIP message names, checked before anything is sent or opened (plain functions).

Every host and port in Via, Contact and SDP comes from whoever sent the packet. None of them
decides where a response goes: that is the packet's source (RFC 3261 §18.2.2 with RFC 3581's
``rport``, always applied, as Kamailio's ``force_rport`` and Asterisk's ``force_rport=yes``
do), so a forged ``received`` or ``rport`` cannot aim our answers at a third party, and a
port of 70000 cannot reach ``sendto``. Host names are never resolved here: a name in a place
where we would have to send to it is refused.
"""

from __future__ import annotations

import ipaddress
import re

from aiosipua import SipRequest
from aiosipua.header_codec import parse_via, stringify_via

# RFC 3261 §25.1 hostname: labels of letters, digits and hyphens (and a trailing dot).
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


class BadAddress(ValueError):
    """An address in a message that must not be used: the message gets 400, or is dropped."""


def ip_literal(host: str) -> str | None:
    """The host as a normalised IP address (IPv6 without brackets), or None for a name."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def valid_port(port: object, *, allow_zero: bool = False) -> bool:
    return isinstance(port, int) and (0 if allow_zero else 1) <= port <= 65535


def valid_host(host: str) -> bool:
    """An IP literal (IPv6 in brackets or not) or a well-formed ASCII host name."""
    if not host or not host.isascii():
        return False
    if ip_literal(host) is not None:
        return True
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    return (
        0 < len(name) <= 253
        and all(_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()  # 1.2.3.999 is a broken address, not a name
    )


def stamp_via(request: SipRequest, source: tuple[str, int]) -> None:
    """Check the top Via and record where the request really came from (§18.2.1, RFC 3581).

    The sent-by must be well formed; ``rport``, ``received`` and ``maddr`` as sent are
    checked and then overwritten or ignored: the top Via leaves here with ``received`` and
    ``rport`` set to the packet's source, which is where every response to it goes.
    Raises BadAddress.
    """
    raw = request.headers.get("via")
    if not raw:
        return  # answered by nobody: the request check refuses it (no Via, no reply)
    top = raw[0]
    if not top.isascii():
        raise BadAddress("non-ASCII Via")
    via = parse_via(top)
    if not valid_host(via.host) or (via.port is not None and not valid_port(via.port)):
        raise BadAddress("bad Via sent-by")
    if not _TOKEN.match(via.transport or ""):
        raise BadAddress("bad Via transport")
    params = via.params
    rport = params.get("rport")
    if rport is not None and not (rport.isdigit() and valid_port(int(rport))):
        raise BadAddress("bad Via rport")
    maddr = params.get("maddr")
    if maddr is not None and not valid_host(maddr):
        raise BadAddress("bad Via maddr")
    branch = params.get("branch")
    if branch is not None and not _TOKEN.match(branch):
        raise BadAddress("bad Via branch")
    params.pop("received", None)
    params.pop("rport", None)
    params["received"] = source[0]
    params["rport"] = str(source[1])
    request.headers.remove("Via")
    request.headers.append("Via", stringify_via(via))
    for value in raw[1:]:
        request.headers.append("Via", value)


def reply_address(vias: list[str]) -> tuple[str, int]:
    """Where a response goes: the ``received``/``rport`` that `stamp_via` wrote, checked again
    (responses are built from stamped requests only, but a check costs nothing)."""
    if not vias:
        raise BadAddress("no Via")
    params = parse_via(vias[0]).params
    host = ip_literal(params.get("received") or "")
    port = params.get("rport") or ""
    if host is None or not port.isdigit() or not valid_port(int(port)):
        raise BadAddress("response Via without the source it was stamped with")
    return host, int(port)


def sendable(addr: tuple[str, int]) -> tuple[str, int]:
    """A destination for ``sendto``: an IP literal and a port 1-65535, never a name (a name
    would be resolved synchronously, on the event loop). Raises BadAddress."""
    host = ip_literal(str(addr[0]))
    if host is None or not valid_port(addr[1]):
        raise BadAddress(f"not an IP address and port: {str(addr[0])[:64]!r}:{addr[1]!r}")
    return host, int(addr[1])
