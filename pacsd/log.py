"""structlog set-up: JSON lines on stderr, console rendering on a terminal.

Outside tools parse stderr line by line, and peers control much of the
text that reaches it (names, AE titles, character sets pydicom warns
about). So everything that could write there goes through structlog's
JSON renderer, which escapes newlines and control characters:

- pacsd's own events;
- stdlib logging (pynetdicom, pydicom) as ``library_log``;
- Python warnings (pydicom's ``warnings.warn``) as ``library_warning``;
- uncaught exceptions, in any thread, as ``unhandled_exception``;
- anything else written to ``sys.stderr`` as ``library_output``, one
  event per line.

Only structlog, and :func:`say` (the CLI's one-line error messages),
write to the real stream.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, TextIO, cast

import structlog

MAX_LINE = 64 * 1024  # characters of library output held before it is logged without its newline

_real_stderr: TextIO = sys.stderr


def configure(level: str = "info") -> None:
    """Route structlog, stdlib logging, warnings and stray stderr output to
    the real stderr as one event per line.

    One event per line with ``event``, ``level`` and ``timestamp``; the
    JSON form is the default whenever stderr is not a terminal.
    """
    global _real_stderr
    if not isinstance(sys.stderr, _StderrGuard):
        _real_stderr = sys.stderr
    renderer: structlog.typing.Processor
    if _real_stderr.isatty():
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
        logger_factory=structlog.WriteLoggerFactory(_real_stderr),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    root.setLevel(logging.WARNING)
    # pydicom reports each problem twice, as a log record and as a warning
    # (warn_and_log); the warning says where, so keep only that.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.showwarning = _show_warning
    # "always" keeps no registry of messages seen: with peer text in the
    # messages, the default action's registry would grow without bound.
    warnings.simplefilter("always", UserWarning)
    sys.excepthook = _log_exception
    threading.excepthook = _log_thread_exception
    sys.stderr = cast(TextIO, _StderrGuard())


def say(line: str) -> None:
    """Write one line for a person (the CLI's ``pacsd: <path>: <problem>``)
    to the real stderr, in one write."""
    _real_stderr.write(line.replace("\n", " ") + "\n")
    _real_stderr.flush()


class _ToStructlog(logging.Handler):
    """A stdlib log record as one ``library_log`` event: its message is
    library (and often peer) text, never an event name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string in a library
            text = repr(record.msg)
        get(record.name).log(record.levelno, "library_log", logger=record.name, text=text)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    get("py.warnings").warning(
        "library_warning", category=category.__name__, text=str(message), source=f"{filename}:{lineno}"
    )


def _log_exception(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        return
    get().error("unhandled_exception", exc_info=(kind, value, tb))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    thread = args.thread.name if args.thread is not None else ""
    get().error("unhandled_exception", thread=thread, exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


class _StderrGuard:
    """``sys.stderr`` for everyone but structlog: each line written becomes
    one ``library_output`` event, so no library can put raw text (or a
    forged event) on a line of its own."""

    encoding = "utf-8"
    errors = "backslashreplace"
    closed = False

    def __init__(self) -> None:
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # Code that writes to the descriptor itself bypasses the guard; no
        # one in pacsd's dependencies does, and faulthandler needs one.
        return _real_stderr.fileno()

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._pending + str(text)).split("\n")
            self._pending = lines.pop()
            if len(self._pending) > MAX_LINE:
                lines.append(self._pending)
                self._pending = ""
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            line, self._pending = self._pending, ""
        if line:
            self._emit(line)

    def _emit(self, line: str) -> None:
        if line.strip():
            get("stderr").warning("library_output", text=line)


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
