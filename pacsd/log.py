"""structlog set-up: JSON lines on stderr, console rendering on a terminal."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog


def configure(level: str = "info") -> None:
    """Route structlog (and pynetdicom's stdlib logging) to stderr.

    One event per line with ``event``, ``level`` and ``timestamp``; outside
    tools parse these lines, so the JSON form is the default whenever stderr
    is not a terminal.
    """
    renderer: structlog.typing.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_pid,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # One write per event: worker processes share stderr, and print() may
        # split a line from its newline between two writes.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # pynetdicom and pydicom log through stdlib logging; send their warnings
    # and errors through structlog so stderr stays one JSON event per line.
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    root.setLevel(logging.WARNING)


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        get(record.name).log(record.levelno, record.getMessage(), logger=record.name)


def _add_pid(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Several worker processes share one stderr; association ids are per process.
    event["pid"] = os.getpid()
    return event


def ms_since(start: float) -> float:
    """Milliseconds since *start* (a time.perf_counter() value), for log events."""
    return round((time.perf_counter() - start) * 1000, 2)


def get(name: str = "pacsd") -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
