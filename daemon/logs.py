"""structlog set-up: one JSON object per line on stderr (journald keeps it)."""

from __future__ import annotations

import logging
import sys

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(level: str = "info") -> None:
    """Route structlog and stdlib logging (py-libp2p's) to JSON lines on stderr."""
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # py-libp2p logs a lot at INFO/WARNING; keep only its errors unless debugging.
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if numeric == logging.DEBUG else logging.ERROR,
        format='{"logger":"%(name)s","level":"%(levelname)s","event":"%(message)s"}',
    )
