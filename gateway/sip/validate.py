"""Is a parsed request fit to act on? The checks RFC 3261 §8.2 and the RFC 4475 torture
tests ask of a UAS, as one pure function: what to answer instead, or None."""

from __future__ import annotations

from aiosipua import SipRequest, SipResponse
from aiosipua.dialog import Dialog
from aiosipua.header_codec import parse_address
from aiosipua.headers import stringify_uri
from aiosipua.message import missing_required_headers

from .addresses import valid_host, valid_port

SCHEMES = ("sip:", "sips:", "tel:")
MAX_CSEQ = 2**31  # RFC 3261 §8.1.1.5: the sequence number is less than 2**31
TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
# Extensions a caller may Require: we never send reliable provisionals, so 100rel holds.
SUPPORTED = frozenset({"100rel", "timer"})
# A route set a proxy chain builds: Kamailio adds one or two entries of ~60 characters each.
MAX_ROUTES = 16
MAX_ROUTE_CHARS = 4096

Problem = tuple[int, str, dict[str, str]]


def request_problem(request: SipRequest) -> Problem | None:
    """(status, reason phrase, extra headers) to answer instead of processing, or None."""
    missing = missing_required_headers(request)
    if missing:
        return 400, f"Missing {', '.join(_pretty(m) for m in missing)}", {}
    if not request.method or not set(request.method) <= TOKEN:
        return 400, "Bad Request Line", {}
    problem = _cseq_problem(request) or _length_problem(request) or _address_problem(request)
    if problem:
        return 400, problem, {}
    if len(request.headers.get("call-id")) > 1 or len(request.headers.get("cseq")) > 1:
        return 400, "Duplicate Call-ID or CSeq", {}
    if not request.uri.lower().startswith(SCHEMES):
        return 416, "Unsupported URI Scheme", {}
    required = {
        token.strip().lower()
        for value in request.headers.get("require")
        for token in value.split(",")
        if token.strip()
    }
    unsupported = sorted(required - SUPPORTED)
    if unsupported and request.method not in ("ACK", "CANCEL"):
        return 420, "Bad Extension", {"Unsupported": ", ".join(unsupported)}  # §8.2.2.3
    return None


def _cseq_problem(request: SipRequest) -> str | None:
    parts = (request.get_header("cseq") or "").split()
    if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) >= MAX_CSEQ:
        return "Bad CSeq"
    if parts[1] != request.method:
        return "CSeq Method Does Not Match"  # RFC 4475 §3.1.2.9
    return None


def _length_problem(request: SipRequest) -> str | None:
    raw = request.get_header("content-length")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit():
        return "Bad Content-Length"
    if int(raw) > len(request.body):
        return "Content-Length Larger Than Message"  # RFC 4475 §3.1.2.7 (truncated)
    return None


def _address_problem(request: SipRequest) -> str | None:
    for name in ("from", "to"):
        try:
            address = parse_address(request.get_header(name) or "")
        except (ValueError, IndexError):
            return f"Bad {_pretty(name)}"
        if not address.uri.host:
            return f"Bad {_pretty(name)}"
    if request.method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER"):
        problem = _contact_problem(request)
        if problem:
            return problem
    if request.method == "INVITE" and not route_set_fits(request.headers.get("record-route")):
        return "Bad Record-Route"
    max_forwards = request.get_header("max-forwards")
    if max_forwards is not None and not max_forwards.strip().isdigit():
        return "Bad Max-Forwards"
    return None


def _contact_problem(request: SipRequest) -> str | None:
    """The remote target of a dialog (§12.1.1): one SIP URI with a well-formed host and port.
    We never send to it (requests go where the call's packets come from), but it is written
    into our requests, and a name or port from an attacker belongs nowhere."""
    if not request.headers.get("contact"):
        return None  # RFC 3261 requires one in an INVITE; aiosipua copes without
    return None if remote_target(request) else "Bad Contact"


def remote_target(message: SipRequest | SipResponse) -> str | None:
    """The URI of a message's one well-formed Contact, or None. A target refresh (re-INVITE,
    UPDATE, or the 2xx to ours) replaces the dialog's remote target with it (RFC 3261
    §12.2.1.2, §12.2.2); a missing or bad one leaves the target as it was."""
    contacts = message.headers.get("contact")
    if len(contacts) != 1 or not contacts[0].isascii():
        return None
    try:
        uri = parse_address(contacts[0]).uri
    except (ValueError, IndexError):
        return None
    if uri.scheme not in ("sip", "sips") or not valid_host(uri.host):
        return None
    if uri.port is not None and not valid_port(uri.port):
        return None
    return stringify_uri(uri)


def route_set_fits(values: list[str]) -> bool:
    """Whether Record-Route lines may become a dialog's route set: we echo them in our answers
    and send them back as Route, so each entry must be a SIP name-addr with a well-formed
    host and port, and the whole set small (a proxy chain, not a payload)."""
    if sum(len(value) for value in values) > MAX_ROUTE_CHARS:
        return False
    entries = [entry for value in values for entry in split_entries(value)]
    return len(entries) <= MAX_ROUTES and all(route_uri(entry) for entry in entries)


def split_entries(value: str) -> list[str]:
    """A header line's comma-separated entries; a comma inside <...> or quotes is kept."""
    entries, start, angle, quoted = [], 0, False, False
    for index, char in enumerate(value):
        if char == '"' and not angle:
            quoted = not quoted
        elif char in "<>" and not quoted:
            angle = char == "<"
        elif char == "," and not (angle or quoted):
            entries.append(value[start:index].strip())
            start = index + 1
    entries.append(value[start:].strip())
    return entries


def route_uri(entry: str) -> str | None:
    """The URI of one Route or Record-Route entry: a name-addr (RFC 3261 §20.30) holding a
    sip: or sips: URI with a well-formed host and port; None for anything else."""
    opening = entry.find("<")
    if not entry.isascii() or opening < 0 or ">" not in entry[opening:]:
        return None
    if not entry[opening + 1 :].lower().startswith(("sip:", "sips:")):
        return None
    try:
        uri = parse_address(entry).uri
    except (ValueError, IndexError):
        return None
    if not valid_host(uri.host) or (uri.port is not None and not valid_port(uri.port)):
        return None
    return stringify_uri(uri)


def first_route(route_set: list[str]) -> str | None:
    """The URI of the nearest proxy in a dialog's route set (its first entry), or None when
    there is none or it is not a well-formed SIP URI."""
    if not route_set:
        return None
    return route_uri(split_entries(route_set[0])[0])


def retarget(dialog: Dialog, message: SipRequest | SipResponse) -> None:
    """A target refresh's Contact becomes the dialog's remote target: the Request-URI of our
    next in-dialog requests, and where a lost TLS connection is made again."""
    target = remote_target(message)
    if target is not None:
        dialog.remote_target = target


def _pretty(name: str) -> str:
    return {"call-id": "Call-ID", "cseq": "CSeq"}.get(name, name.title())
