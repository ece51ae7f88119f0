"""structlog set-up: one JSON object per line on stderr (journald keeps it).

py-libp2p logs through the standard ``logging`` module, in plain text that can span
lines (tracebacks); its records go through the same JSON renderer as ours, so every
line of the daemon's log is one JSON object.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# py-libp2p's pubsub says so when our subscription's buffer is full and it drops a message.
SUBSCRIPTION_DROP = "fail to deliver message to subscription"


def configure_logging(level: str = "info") -> None:
    """Route structlog and stdlib logging (py-libp2p's) to JSON lines on stderr."""
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    # py-libp2p logs a lot at INFO/WARNING; keep only its errors unless debugging.
    # (The handler filters too: loggers set lower, as below, are counted, not printed.)
    quiet = logging.DEBUG if numeric == logging.DEBUG else logging.ERROR
    handler.setLevel(quiet)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(quiet)
    logging.lastResort = handler  # records of loggers with no handler: JSON, not plain text
    adopt_libp2p_logger()


def adopt_libp2p_logger() -> None:
    """Send py-libp2p's records to our handler. On import, py-libp2p clears the
    ``libp2p`` logger's handlers and stops it propagating (unless LIBP2P_DEBUG is set),
    so its errors reached stderr through ``logging.lastResort`` as plain text."""
    libp2p = logging.getLogger("libp2p")
    libp2p.handlers.clear()
    libp2p.propagate = True
    libp2p.setLevel(logging.NOTSET)


def count_subscription_drops(count: Callable[[], None]) -> Callable[[], None]:
    """Call ``count()`` for every message py-libp2p drops because our subscription's
    buffer was full (it only logs a warning). Returns a function that stops counting."""

    class _DropCounter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith(SUBSCRIPTION_DROP):
                count()

    logger = logging.getLogger("libp2p.pubsub.pubsub")
    counter, previous = _DropCounter(logging.WARNING), logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.addHandler(counter)

    def stop() -> None:
        logger.removeHandler(counter)
        logger.setLevel(previous)

    return stop
