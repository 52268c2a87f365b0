"""The one writer of the index: work committed in groups, by whoever waits.

Associations run in threads of their own; each hands its index work to
:meth:`IndexWriter.run` and blocks until that work is committed. Work
queues up in arrival order; the thread whose work is at the front leads:
it takes everything queued (up to MAX_GROUP), runs each piece in its own
savepoint of one transaction on the writer's connection (so a refused
object rolls back alone), commits the group once, wakes the owners of the
work it committed, and hands the lead to the front of the queue. One fsync
of the WAL for many objects, no SQLITE_BUSY between our own threads, and
nobody is answered before the commit that holds their rows.

There is no writer thread: an association alone commits its own object
without waking anyone (handing each object to a thread and back cost two
context switches, a tenth of a small store).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from pacsd import log
from pacsd.index.dialect import SQLITE

MAX_GROUP = 64
BEGIN = SQLITE.begin_write  # the write lock from the start: no upgrade from a read to fail

# apply(conn) runs in a savepoint on the writer's apsw connection and must
# not open transactions of its own, nor call run() (its work would queue
# behind itself); undo(value) reverses its side effects (e.g. a placed
# file) if the commit fails.
Apply = Callable[[Any], Any]
Undo = Callable[[Any], None]


class WriterStopped(Exception):
    """Work arrived after the writer was stopped."""


class _Job:
    __slots__ = ("apply", "undo", "wake", "done", "value", "error")

    def __init__(self, apply: Apply, undo: Undo) -> None:
        self.apply = apply
        self.undo = undo
        # Released once: when the job is done, or when it is to lead.
        self.wake = threading.Lock()
        self.wake.acquire()
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def finish(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error, self.done = value, error, True

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class IndexWriter:
    def __init__(self, connect: Callable[[], Any]) -> None:
        """*connect* opens the writer's own apsw connection."""
        self._connect = connect
        self._conn: Any = None
        self._queue: collections.deque[_Job] = collections.deque()
        self._mutex = threading.Lock()
        self._stopped = False
        self._log = log.get("pacsd.index")
        # Run once each, after the group's savepoints and before its commit.
        self._barrier: dict[Hashable, Callable[[], None]] = {}

    def start(self) -> None:
        self._conn = self._connect()

    def stop(self) -> None:
        """Refuse new work, let queued work commit, close the connection."""
        with self._mutex:
            self._stopped = True
        while True:
            with self._mutex:
                if not self._queue:
                    break
            time.sleep(0.01)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self, apply: Apply, undo: Undo) -> Any:
        """Run *apply* in a savepoint and return its value once committed;
        raise what it (or the commit) raised."""
        job = _Job(apply, undo)
        with self._mutex:
            if self._stopped:
                raise WriterStopped("the index writer has stopped")
            self._queue.append(job)
            leads = len(self._queue) == 1
        if not leads:
            job.wake.acquire()
            if job.done:
                return job.outcome()
        self._lead()
        return job.outcome()

    def before_commit(self, key: Hashable, action: Callable[[], None]) -> None:
        """From inside an *apply*: run *action* before this group commits
        (once per *key*, however many jobs ask). If it raises, nothing in
        the group is committed."""
        self._barrier.setdefault(key, action)

    def _lead(self) -> None:
        """Commit the group at the front of the queue (ours is first), wake
        its owners, and hand the lead on."""
        with self._mutex:
            group = [self._queue[n] for n in range(min(len(self._queue), MAX_GROUP))]
        try:
            self._commit_group(group)
        except BaseException as exc:  # never leave anyone waiting forever
            self._log.exception("index_writer_error")
            for job in group:
                if not job.done:
                    job.finish(error=exc)
        finally:
            with self._mutex:
                for _ in group:
                    self._queue.popleft()
                successor = self._queue[0] if self._queue else None
            for job in group[1:]:
                job.wake.release()
            if successor is not None:
                successor.wake.release()  # not done: it leads next

    def _commit_group(self, group: list[_Job]) -> None:
        conn = self._conn
        done: list[tuple[_Job, Any]] = []
        failed: list[tuple[_Job, BaseException]] = []
        self._barrier.clear()
        try:
            conn.execute(BEGIN)
            try:
                for job in group:
                    conn.execute("SAVEPOINT job")
                    try:
                        value = job.apply(conn)
                    except Exception as exc:
                        failed.append((job, exc))
                        if conn.getautocommit():
                            # SQLite rolled the whole transaction back (a full
                            # disk, an I/O error): nothing of the group stays.
                            raise
                        conn.execute("ROLLBACK TO job")
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
            for job in group:
                if not job.done:  # not run yet: the transaction was gone
                    job.finish(error=exc)
            return
        for job, value in done:
            job.finish(value)
        for job, job_exc in failed:
            job.finish(error=job_exc)
