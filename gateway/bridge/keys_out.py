"""Keys the gateway presses toward the other side of a call (the model's send_dtmf tool, the
control API's /dtmf): RFC 4733 telephone-events in the RTP stream when the far end's SDP
has telephone-event, else one SIP INFO (application/dtmf-relay) per key, each after the
previous one was answered, as IVRs behind old PBXs expect."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiosipua import IncomingCall

from ..media.key_sender import MAX_PENDING_KEYS
from ..media.stream import RtpStream

KEYS = re.compile(r"[0-9*#A-D]+")
INFO_DURATION_MS = 160


class OutgoingKeys:
    """One call's keys out; at most one run of SIP INFO keys at a time."""

    def __init__(self, stream: RtpStream, uas: Any, sip: IncomingCall, log: Any) -> None:
        self.stream = stream
        self.uas = uas  # gateway.sip.uas.GatewayUAS (its OutgoingRequests send the INFOs)
        self.sip = sip
        self.log = log
        self._info: asyncio.Task[None] | None = None

    def send(self, digits: str) -> str:
        """Send these keys; the way ("rfc4733" or "sip_info"). ValueError when they are not
        keys (0-9 * # A-D), too many, or keys are still being sent by INFO."""
        digits = digits.upper()
        if not KEYS.fullmatch(digits) or len(digits) > MAX_PENDING_KEYS:
            raise ValueError(f"keys are 1 to {MAX_PENDING_KEYS} of 0-9 * # A-D")
        if self.stream.dtmf_payload_type is not None:
            self.stream.send_keys(digits)
            self.log.info("call.keys_sent", keys=len(digits), via="rfc4733")
            return "rfc4733"
        if self._info is not None and not self._info.done():
            raise ValueError("keys are still being sent (SIP INFO)")
        self._info = asyncio.get_running_loop().create_task(self._send_info(digits))
        return "sip_info"

    async def _send_info(self, digits: str) -> None:
        for sent, digit in enumerate(digits):
            body = f"Signal={digit}\r\nDuration={INFO_DURATION_MS}\r\n"
            status = await self.uas.outgoing.send_info(self.sip, body, "application/dtmf-relay")
            if status is None or status >= 300:
                self.log.warning("call.keys_failed", via="sip_info", sent=sent, status=status)
                return
        self.log.info("call.keys_sent", keys=len(digits), via="sip_info")

    def close(self) -> None:
        if self._info is not None:
            self._info.cancel()
