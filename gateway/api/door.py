"""Who keeps being refused by the API (or its console) is shut out for a while.

A stranger who can reach the API's port may try tokens as fast as the server answers, and each
refusal writes a warning to the log. Counting the refusals per source address, as sip.auth
does for digest failures (``sip/blocklist.py``, the same object), and answering every request
from a source that reached ``api.max_failures`` within ``api.failure_window_s`` with 429 for
``api.block_s``, unchecked and unlogged, bounds both: a handful of guesses and log lines per
block. A TCP source address cannot be forged the way a UDP one can, so a stranger cannot get
another host shut out (a host behind the same NAT shares its fate, as with fail2ban).
"""

from __future__ import annotations

import structlog
from aiohttp import web
from prometheus_client import Counter

from ..sip.blocklist import AuthBlocklist
from .problems import problem_response

log = structlog.get_logger("gateway")


class ApiDoor:
    """The refusals of the API and its console, counted per source (``refused``), and the
    answer to a source shut out (``shut``)."""

    def __init__(self, blocklist: AuthBlocklist, blocks: Counter | None = None) -> None:
        self.blocklist = blocklist
        self._blocks = blocks

    @classmethod
    def never(cls) -> ApiDoor:
        """A door that logs refusals and shuts no one out (api.max_failures 0)."""
        return cls(AuthBlocklist(0, 60.0, 600.0))

    @staticmethod
    def source(request: web.Request) -> str:
        return request.remote or "?"

    def shut(self, request: web.Request) -> web.Response | None:
        """429 for a source shut out now (nothing else of its request is read), else None."""
        if not self.blocklist.blocked(self.source(request)):
            return None
        retry = max(1, round(self.blocklist.block_s))
        return problem_response(
            429,
            "too many refused requests from this address: try again later",
            {"Retry-After": str(retry)},
        )

    def refused(self, request: web.Request, event: str, **fields: object) -> None:
        """Log a refusal (``event``) and count it against its source."""
        source = self.source(request)
        log.warning(event, source=source, path=request.path[:200], **fields)
        if self.blocklist.failed(source):
            if self._blocks is not None:
                self._blocks.inc()
            log.warning(
                "api.source_blocked",
                source=source,
                failures=self.blocklist.max_failures,
                window_s=self.blocklist.window_s,
                block_s=self.blocklist.block_s,
            )
