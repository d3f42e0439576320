"""Messages the UAS builds or reads without a dialog, as pure functions.

The stateless error answer (to a request refused before, or outside, any dialog), the SDP
offer of an INVITE or re-INVITE, and the key in an INFO: kept out of the UAS so that its
classes hold only what needs the loop and the call table, and so that these are tested alone.
"""

from __future__ import annotations

import structlog
from aiosipua import SipRequest, SipResponse, parse_sdp
from aiosipua.sdp import SdpMessage
from aiosipua.utils import generate_tag

log = structlog.get_logger("gateway.sip")

_DIGITS = "0123456789*#ABCD"


def error_response(
    request: SipRequest,
    status: int,
    reason: str,
    headers: dict[str, str] | None = None,
    user_agent: str | None = None,
) -> SipResponse:
    """An answer built from the request alone (no dialog): its Via, From, Call-ID and CSeq,
    its To with a tag of ours when it had none."""
    response = SipResponse(status_code=status, reason_phrase=reason)
    for name, value in (headers or {}).items():
        response.headers.set_single(name, value)
    for via in request.headers.get("via"):
        response.headers.append("Via", via)
    for name in ("From", "Call-ID", "CSeq"):
        value = request.headers.get_first(name)
        if value:
            response.headers.set_single(name, value)
    to = request.headers.get_first("to")
    if to:
        response.headers.set_single("To", to if ";tag=" in to else f"{to};tag={generate_tag()}")
    if user_agent:
        response.headers.set_single("User-Agent", user_agent)
    return response


class Unacceptable(Exception):
    """A request body we refuse, and the answer it gets."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


def read_offer(request: SipRequest) -> SdpMessage | None:
    """The request's SDP offer, or None when it has no body. Raises Unacceptable (415 for
    another body type, 400 for an SDP that cannot be read)."""
    if not request.body:
        return None
    if (request.content_type or "").split(";")[0].strip().lower() != "application/sdp":
        raise Unacceptable(415, "Unsupported Media Type", {"Accept": "application/sdp"})
    try:
        return parse_sdp(request.text)
    except (ValueError, IndexError) as exc:
        log.warning("sip.bad_sdp", sip_call_id=request.call_id, error=str(exc)[:200])
        raise Unacceptable(400, "Malformed SDP") from None


def info_digit(body: str, kind: str) -> str | None:
    """The key in an INFO body: `Signal=5` (dtmf-relay) or `5` (application/dtmf); events
    10 and 11 are * and # (RFC 4733 numbering, which some phones send)."""
    value = body.strip()
    if kind == "application/dtmf-relay":
        value = next(
            (
                line.split("=", 1)[1].strip()
                for line in body.splitlines()
                if line.strip().lower().startswith("signal=")
            ),
            "",
        )
    if value in ("10", "11"):
        return "*#"[int(value) - 10]
    value = value.upper()
    return value if len(value) == 1 and value in _DIGITS else None
