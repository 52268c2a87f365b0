"""The one writer of the index: a thread that commits work in groups.

Associations run in threads of their own; each hands its index work to
:meth:`IndexWriter.submit` and blocks until that work is committed. The
writer takes whatever has queued up, runs each piece in its own savepoint
of one transaction (so a refused object rolls back alone), and commits the
group once: one fsync of the WAL for many objects, and no SQLITE_BUSY
between our own threads. Nobody is answered before the commit that holds
their rows.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from playhouse.apsw_ext import APSWDatabase

from pacsd import log

MAX_GROUP = 64


@dataclass
class _Job:
    apply: Callable[[], Any]
    # Undo side effects of apply() (e.g. a placed file) if the commit fails.
    undo: Callable[[Any], None]
    future: Future[Any] = field(default_factory=Future)


class IndexWriter:
    def __init__(self, db: APSWDatabase) -> None:
        self.db = db
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
        self._log = log.get("pacsd.index")
        # Run once each, after the group's savepoints and before its commit.
        self._barrier: dict[Hashable, Callable[[], None]] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()

    def submit(self, apply: Callable[[], Any], undo: Callable[[Any], None]) -> Future[Any]:
        """Queue *apply* to run in a savepoint on the writer. The future
        has its result once committed, or what it (or the commit) raised."""
        job = _Job(apply, undo)
        self._queue.put(job)
        return job.future

    def before_commit(self, key: Hashable, action: Callable[[], None]) -> None:
        """From inside an *apply*: run *action* before this group commits
        (once per *key*, however many jobs ask). If it raises, nothing in
        the group is committed."""
        self._barrier.setdefault(key, action)

    def _next_group(self) -> tuple[list[_Job], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        group = [first]
        while len(group) < MAX_GROUP:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return group, True
            group.append(job)
        return group, False

    def _run(self) -> None:
        with self.db.connection_context():
            stopping = False
            while not stopping:
                group, stopping = self._next_group()
                try:
                    self._commit_group(group)
                except BaseException as exc:  # never leave a submitter waiting forever
                    self._log.exception("index_writer_error")
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(exc)

    def _commit_group(self, group: list[_Job]) -> None:
        if not group:
            return
        done: list[tuple[_Job, Any]] = []
        failed: list[tuple[_Job, BaseException]] = []
        self._barrier.clear()
        try:
            with self.db.atomic("IMMEDIATE"):
                for job in group:
                    try:
                        with self.db.atomic():  # a savepoint per job
                            done.append((job, job.apply()))
                    except Exception as exc:
                        failed.append((job, exc))
                for action in self._barrier.values():
                    action()
        except Exception as exc:
            # The commit itself failed: nothing in the group is stored.
            self._log.error("index_commit_failed", error=str(exc), group=len(group))
            for job, result in done:
                try:
                    job.undo(result)
                finally:
                    job.future.set_exception(exc)
            for job, job_exc in failed:
                job.future.set_exception(job_exc)
            return
        for job, result in done:
            job.future.set_result(result)
        for job, job_exc in failed:
            job.future.set_exception(job_exc)
