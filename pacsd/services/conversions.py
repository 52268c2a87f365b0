"""The conversion pool: a few processes that re-encode stored instances
for a retrieve (DESIGN.md "Transcoding": CPU-heavy work is bounded so a
burst of conversions cannot starve ingest).

Processes, not threads: much of a conversion holds the GIL (pydicom's
parsing and RLE encoder, the pixel fixes), which would stall the
process's associations; and a codec that crashes on a damaged object ends
its own process, not the server. The pool starts with the first
conversion, and again after a crash.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar

from pacsd import log
from pacsd.domain.errors import ConversionFailed, NotSendable, Refusal
from pacsd.services import transcode

_log = log.get("pacsd.conversions")

# A fresh process now and then, so memory a codec keeps does not pile up.
TASKS_PER_PROCESS = 1000
PARENT_POLL_SECONDS = 0.5

Converted = tuple[bytes, float]  # the dataset in the target syntax, and the milliseconds it took
T = TypeVar("T")


class Conversions:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def submit(self, path: str, source: str, target: str) -> Future[Converted]:
        """Convert the file at *path* (stored as *source*) to *target*. The
        future fails with ConversionFailed: the codec's reason, or that its
        process ended (the next conversion gets a new one)."""
        return self.call(transcode.timed, path, target, source=source, target=target)

    def call(self, work: Callable[..., T], *args: Any, source: str, target: str) -> Future[T]:
        """Run ``work(*args)`` (a module-level function) in a conversion
        process: other CPU-heavy work on stored objects (rendering). The
        future fails with the NotSendable or Refusal *work* raised, else
        with ConversionFailed from *source* to *target* naming the problem."""
        outcome: Future[T] = Future()
        for _ in range(2):  # a pool found broken on submit is replaced once
            pool = self._executor()
            try:
                converting = pool.submit(work, *args)
            except BrokenProcessPool:
                self._discard(pool)
                continue
            converting.add_done_callback(partial(self._settle, pool, outcome=outcome, source=source, target=target))
            return outcome
        outcome.set_exception(ConversionFailed(source, target, "no conversion process"))
        return outcome

    def start(self) -> None:
        """Start the processes now, in the background, rather than with the
        first conversion: a spawned process takes about a second to import
        the codecs, which a viewer's first request would otherwise wait."""
        for _ in range(self.processes):
            self.call(_ready, source="", target="")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the conversion pool is closed")
            if self._pool is None:
                # spawn: a fork of a process with threads can inherit a held lock.
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    multiprocessing.get_context("spawn"),
                    initializer=_end_with_parent,
                    initargs=(os.getpid(),),
                    max_tasks_per_child=TASKS_PER_PROCESS,
                )
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def _settle(
        self,
        pool: ProcessPoolExecutor,
        done: Future[T],
        *,
        outcome: Future[T],
        source: str,
        target: str,
    ) -> None:
        if done.cancelled():  # the pool was shut down: the server is stopping
            reason = "cancelled: the server is stopping"
            outcome.set_exception(ConversionFailed(source, target, reason))
            return
        error = done.exception()
        if error is None:
            outcome.set_result(done.result())
        elif isinstance(error, NotSendable | Refusal):  # ConversionFailed, NoSuchFrame...: the work's own word
            outcome.set_exception(error)
        else:
            if isinstance(error, BrokenProcessPool):
                _log.error("conversion_process_ended", source=source, target=target)
                self._discard(pool)
                reason = "the conversion process ended (the codec crashed?)"
            else:
                reason = f"{type(error).__name__}: {error}"
            outcome.set_exception(ConversionFailed(source, target, reason))


def _end_with_parent(parent: int) -> None:
    """In a conversion process: exit once the serving process is gone (a
    kill -9 leaves no orphan). Polled, because PR_SET_PDEATHSIG fires when
    the *thread* that started the process ends, and that is an association's."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _ready() -> None:
    """Run in a new conversion process: what conversions import, imported."""
    from pacsd.services import metadata, rendering  # noqa: F401  (transcode came with this module)
