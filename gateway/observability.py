"""Logging set-up: JSON lines for journald/Loki, console on a TTY.

Every line of a call carries `call_id` (ours) and `sip_call_id`, bound once
when the call arrives.
"""

from __future__ import annotations

import logging
import sys

import structlog

from .config import LoggingConfig


def setup_logging(cfg: LoggingConfig) -> None:
    level = logging.getLevelNamesMapping()[cfg.level.upper()]
    fmt = cfg.format or ("console" if sys.stderr.isatty() else "json")
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries log through stdlib logging: same stream, warnings and up.
    logging.basicConfig(
        stream=sys.stderr,
        level=max(level, logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
