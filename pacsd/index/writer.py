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
from typing import Any

from playhouse.apsw_ext import APSWDatabase

from pacsd import log

MAX_GROUP = 64


class Job:
    """Work for the writer, and its outcome once committed. A lock, not a
    Future: its condition variable was a tenth of the writer's CPU."""

    __slots__ = ("apply", "undo", "_finished", "_value", "_error", "done")

    def __init__(self, apply: Callable[[], Any], undo: Callable[[Any], None]) -> None:
        self.apply = apply
        # Undo side effects of apply() (e.g. a placed file) if the commit fails.
        self.undo = undo
        self._finished = threading.Lock()
        self._finished.acquire()
        self._value: Any = None
        self._error: BaseException | None = None
        self.done = False

    def finish(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value, self._error, self.done = value, error, True
        self._finished.release()

    def result(self) -> Any:
        """Wait until committed (or failed); the value of apply() or what
        it (or the commit) raised. Once per job."""
        self._finished.acquire()
        if self._error is not None:
            raise self._error
        return self._value


class IndexWriter:
    def __init__(self, db: APSWDatabase) -> None:
        self.db = db
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
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

    def submit(self, apply: Callable[[], Any], undo: Callable[[Any], None]) -> Job:
        """Queue *apply* to run in a savepoint on the writer; the job's
        :meth:`Job.result` waits for its commit."""
        job = Job(apply, undo)
        self._queue.put(job)
        return job

    def before_commit(self, key: Hashable, action: Callable[[], None]) -> None:
        """From inside an *apply*: run *action* before this group commits
        (once per *key*, however many jobs ask). If it raises, nothing in
        the group is committed."""
        self._barrier.setdefault(key, action)

    def _next_group(self) -> tuple[list[Job], bool]:
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
                        if not job.done:
                            job.finish(error=exc)

    def _commit_group(self, group: list[Job]) -> None:
        if not group:
            return
        # Transaction and savepoints straight on the apsw connection: peewee's
        # atomic() cost more CPU than the statements. Jobs must not open
        # transactions of their own.
        conn = self.db.connection()
        done: list[tuple[Job, Any]] = []
        failed: list[tuple[Job, BaseException]] = []
        self._barrier.clear()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for job in group:
                    conn.execute("SAVEPOINT job")
                    try:
                        value = job.apply()
                    except Exception as exc:
                        conn.execute("ROLLBACK TO job")
                        failed.append((job, exc))
                    else:
                        done.append((job, value))
                    conn.execute("RELEASE job")
                for action in self._barrier.values():
                    action()
                conn.execute("COMMIT")
            except BaseException:
                if not conn.getautocommit():
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            # The commit itself failed: nothing in the group is stored.
            self._log.error("index_commit_failed", error=str(exc), group=len(group))
            for job, value in done:
                try:
                    job.undo(value)
                finally:
                    job.finish(error=exc)
            for job, job_exc in failed:
                job.finish(error=job_exc)
            return
        for job, value in done:
            job.finish(value)
        for job, job_exc in failed:
            job.finish(error=job_exc)
