"""Who may place a call now: digest authentication and its blocklist, draining, sip.max_calls.

A source outside sip.allow_from never gets this far (the transport's door). What is refused
here gets its SIP answer at once and, unless it is part of the digest exchange (401) or comes
from a blocked source, a call record of its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiosipua import IncomingCall

from .call_record import CallRecord, RecordWriter
from .config import GatewayConfig
from .metrics import Metrics
from .refusals import PHRASES, RETRY_AFTER_S
from .routing import CallInfo
from .sip.answer import reject
from .sip.blocklist import AuthBlocklist
from .sip.digest import DigestVerifier
from .sip.uas import GatewayUAS
from .startup import StartupError

log = structlog.get_logger("gateway")


@dataclass(frozen=True)
class Refusal:
    """An INVITE that cannot be taken: its answer, metric label and logged reason."""

    status: int
    label: str  # one of refusals.REFUSALS
    why: str
    headers: Mapping[str, str | list[str]] = field(default_factory=dict)


class Admission:
    """Decides whether an INVITE may become a call, and refuses it when not."""

    def __init__(
        self,
        metrics: Metrics,
        records: RecordWriter,
        digest: DigestVerifier | None = None,
        blocklist: AuthBlocklist | None = None,
    ) -> None:
        self.metrics = metrics
        self.records = records
        self.digest = digest
        self.blocklist = blocklist

    @classmethod
    def from_config(
        cls, cfg: GatewayConfig, users: dict[str, str], metrics: Metrics, records: RecordWriter
    ) -> Admission:
        """sip.auth's verifier and blocklist (none without sip.auth); `users` are the
        passwords found in the environment."""
        auth = cfg.sip.auth
        if auth is None:
            return cls(metrics, records)
        missing = [u.password_env for u in auth.users if u.username not in users]
        if missing:
            raise StartupError(f"sip.auth.users: environment variable {missing[0]} is not set")
        digest = DigestVerifier(auth.realm, users, algorithms=auth.algorithms)
        blocklist = AuthBlocklist(auth.max_failures, auth.failure_window_s, auth.block_s)
        metrics.auth_blocked_sources.set_function(blocklist.blocked_sources)
        return cls(metrics, records, digest, blocklist)

    def refusal(self, sip: IncomingCall, *, draining: bool, full: bool) -> Refusal | None:
        """Why an INVITE cannot be taken, None when it can."""
        refused = self._authentication(sip)
        if refused is not None:
            return refused
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        if draining:
            return Refusal(503, "draining", "the gateway is stopping", retry)
        if full:
            return Refusal(503, "max_calls", "sip.max_calls reached", retry)
        return None

    def _authentication(self, sip: IncomingCall) -> Refusal | None:
        if self.digest is None or self.blocklist is None:
            return None
        source, blocklist = sip.source_addr[0], self.blocklist
        if blocklist.blocked(source):
            return Refusal(403, "auth_blocked", "source blocked: repeated authentication failures")
        verdict = self.digest.verify(sip.invite, source)
        if verdict.ok:
            return None
        why = f"digest: {verdict.reason}"
        if verdict.failure and blocklist.failed(source):
            self.metrics.auth_blocks.inc()
            log.warning(
                "sip.auth_blocked",
                source=source,
                failures=blocklist.max_failures,
                window_s=blocklist.window_s,
                block_s=blocklist.block_s,
            )
            return Refusal(403, "auth_blocked", why)
        if verdict.status == 400:
            return Refusal(400, "unauthorized", why)
        challenges = self.digest.challenges(source, stale=verdict.stale)
        return Refusal(401, "unauthorized", why, {"WWW-Authenticate": challenges})

    def refuse(self, uas: GatewayUAS, sip: IncomingCall, refusal: Refusal, clog: Any) -> None:
        """Answer the refused INVITE; count it, and record it unless it is part of the
        digest exchange (a challenge) or comes from a blocked source."""
        # A blocked source's INVITEs: its block was logged once, they leave no record.
        blocked = refusal.label == "auth_blocked"
        status = refusal.status
        (clog.debug if blocked else clog.warning)(
            "call.rejected", status=status, reason=refusal.why
        )
        self.metrics.rejected(refusal.label)
        if blocked:
            uas.refuse_call(sip, status, PHRASES[status])  # once, no transaction
        else:
            reject(sip, status, PHRASES[status], headers=refusal.headers)
            uas.forget(sip)
        if status != 401 and not blocked:  # a challenge is part of the digest exchange
            self._record(sip, status, refusal.label)

    def _record(self, sip: IncomingCall, status: int, label: str) -> None:
        if self.records.directory is None:
            return
        dialed = CallInfo.from_invite(sip).dialed
        record = CallRecord.of_invite(
            secrets.token_hex(6), sip, dialed, end_reason=label, sip_status=status
        )
        record.ended_at = record.received_at
        self.records.refusal(record)
