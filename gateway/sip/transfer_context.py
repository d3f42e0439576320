"""What a transfer carries to the human: context headers, and the Refer-To of a warm one.

The model writes the summary, and the caller may have talked it into anything, so every
value that reaches a header here is made safe first: no CR, LF or other control character
(they would end the header and start one of the caller's choosing), bounded in length.
``User-to-User`` (RFC 7433) travels hex-encoded with ``;encoding=hex``, so any text fits.

The Refer-To of a warm transfer (RFC 5589 §7) names the target's Contact with a Replaces
header (RFC 3891 §3) for our dialog with it: the caller's side then INVITEs the target with
Replaces, and the target swaps our leg for the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

MAX_HEADER_VALUE = 512  # a header value after substitution (before hex for User-to-User)
MAX_SUMMARY_CHARS = 1000  # what the model may give as the summary
USER_TO_USER = "user-to-user"

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.-]{0,63})\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# RFC 3261 §25.1 token: the characters a header name may have.
HEADER_NAME = re.compile(r"[A-Za-z0-9!%'*+\-.^_`|~]{1,64}\Z")
_RESERVED = frozenset(
    h.lower()
    for h in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Route",
        "Record-Route", "Content-Length", "Content-Type", "Refer-To", "Referred-By",
        "Replaces", "Authorization", "Proxy-Authorization", "Require", "Event",
    )
)  # fmt: skip


def header_name(name: str) -> str:
    """`name` if a transfer may set it (a token, not one the dialog owns), else ValueError."""
    if not HEADER_NAME.match(name):
        raise ValueError(f"{name!r} is not a SIP header name (letters, digits, - . ! % * _ + ` ')")
    if name.lower() in _RESERVED:
        raise ValueError(f"{name} belongs to the SIP dialog; a transfer cannot set it")
    return name


def sanitise(value: str, limit: int = MAX_HEADER_VALUE) -> str:
    """One line of printable text: control characters (CR, LF, NUL, tab ...) become one space,
    the ends are trimmed, and at most `limit` characters remain."""
    return _CONTROL.sub(" ", value).strip()[:limit].strip()


def render(template: str, variables: Mapping[str, str]) -> str:
    """`template` with each ${name} replaced by the variable's value, sanitised first (an
    unknown name becomes empty text); the whole sanitised again."""

    def value(match: re.Match[str]) -> str:
        return sanitise(str(variables.get(match.group(1), "")))

    return sanitise(_VARIABLE.sub(value, template))


def context_headers(templates: Mapping[str, str], variables: Mapping[str, str]) -> dict[str, str]:
    """The headers of a transfer: each template rendered; an empty one left out;
    User-to-User hex-encoded (RFC 7433 §4.1)."""
    headers: dict[str, str] = {}
    for name, template in templates.items():
        text = render(template, variables)
        if not text:
            continue
        if name.lower() == USER_TO_USER:
            headers[name] = text.encode("utf-8").hex() + ";encoding=hex"
        else:
            headers[name] = text
    return headers


def replaces_refer_to(target: str, call_id: str, to_tag: str, from_tag: str) -> str:
    """The Refer-To of a warm transfer: `<target?Replaces=...>`, the dialog to replace
    being ours with the target (its Call-ID; to-tag is the target's tag, from-tag ours, as
    in our INVITE to it), escaped as a URI header (RFC 3261 §19.1.1)."""
    for part in (target, call_id, to_tag, from_tag):
        if not part or _CONTROL.search(part) or any(c in part for c in '<>" '):
            raise ValueError("a Refer-To part is empty or has characters a URI cannot hold")
    if "?" in target:
        raise ValueError("the target's Contact already has URI headers")
    replaces = f"{call_id};to-tag={to_tag};from-tag={from_tag}"
    return f"<{target}?Replaces={quote(replaces, safe='')}>"
