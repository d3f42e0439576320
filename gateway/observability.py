"""Logging set-up: JSON lines for journald/Loki, console on a TTY.

Every line of a call carries `call_id` (ours) and `sip_call_id`: the call's task binds them
as context variables, and both our lines and the libraries' (websockets, aiosipua, through
stdlib logging) are rendered by the same processors, which merge them in. One JSON object
per line, on stderr, so journald stores each as one entry.

Libraries log at warning and above only: websockets logs the handshake headers, with the
`api-key`, at debug level. aiosipua warns about some malformed input once per packet (a body
shorter than its Content-Length, a missing header): its lines are let through once a minute
per message, so a flood of such packets cannot flood the log.
"""

from __future__ import annotations

import logging
import sys

import structlog

from .config import LoggingConfig
from .console.hub import log_tap
from .sip.door import LogLimiter

LIBRARY_MIN_LEVEL = logging.WARNING
RATE_LIMITED_LIBRARIES = ("aiosipua",)


class LibraryRateLimit(logging.Filter):
    """At most one line a minute per message template of the libraries that log per packet."""

    def __init__(self) -> None:
        super().__init__()
        self._limiter = LogLimiter(60.0)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(RATE_LIMITED_LIBRARIES):
            return True
        return self._limiter.allow(record.name, str(record.msg))


def setup_logging(cfg: LoggingConfig) -> None:
    level = logging.getLevelNamesMapping()[cfg.level.upper()]
    fmt = cfg.format or ("console" if sys.stderr.isatty() else "json")
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        log_tap,  # a call's notable lines to the live console, while a page is open
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.addFilter(LibraryRateLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, LIBRARY_MIN_LEVEL))
