"""Files written ahead of their flush: made durable in batches, or replayed.

A small object is answered once its rows *and its bytes* are committed to
the index (:mod:`pacsd.index.writeahead`); its file is in place but not yet
fsynced. The :class:`Syncer` flushes such files in batches with one syncfs
(one journal commit for a hundred files, not two per file), then deletes
their copies from the index. After a crash, :func:`replay` rewrites the file
of every copy still there before anything serves, so an indexed object
always has its file, byte for byte.
"""

from __future__ import annotations

import threading
import time

from pacsd import log
from pacsd.ports import FileStore, Index

INTERVAL = 0.1  # seconds a batch gathers before its flush
MAX_BATCH = 2000  # files; a full batch is flushed at once


class Syncer:
    """One per serving process, beside its index (:class:`pacsd.ports.Flusher`)."""

    def __init__(self, storage: FileStore, index: Index, interval: float = INTERVAL) -> None:
        self.storage = storage
        self.index = index
        self.interval = interval
        self._pending: list[int] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="syncer", daemon=True)
        self._log = log.get("pacsd.syncer")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Flush what is pending, then stop (before the index closes)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()

    def written(self, instance_id: int) -> None:
        """The rows and copy of *instance_id* are committed; flush its file."""
        with self._wake:
            self._pending.append(instance_id)
            if len(self._pending) == 1 or len(self._pending) >= MAX_BATCH:
                self._wake.notify()

    def _next_batch(self) -> list[int]:
        """Wait for pending files, let a batch gather; [] once stopped and drained."""
        with self._wake:
            while not self._pending and not self._stopping:
                self._wake.wait()
            deadline = time.monotonic() + self.interval
            while not self._stopping and len(self._pending) < MAX_BATCH:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(left)
            batch, self._pending = self._pending, []
            return batch

    def _run(self) -> None:
        while batch := self._next_batch():
            try:
                self.storage.sync()
                self.index.write(lambda tx: tx.drop_copies(batch), lambda _: None)
            except Exception as exc:
                # The copies stay in the index (replayed at start-up if it
                # comes to that); try again with the next batch.
                self._log.error("sync_failed", error=str(exc), files=len(batch))
                with self._wake:
                    self._pending[:0] = batch
                    if self._stopping:
                        return
                time.sleep(self.interval)


def replay(storage: FileStore, index: Index) -> int:
    """Rewrite the file of every write-ahead copy in *index* (started), make
    them durable and drop the copies. Only before anything serves. Returns
    how many files were rewritten."""
    done = []
    for instance_id, relative, data in index.copies():
        storage.place(storage.write_temp([data], sync=False), relative)
        done.append(instance_id)
    if done:
        storage.sync()
        index.write(lambda tx: tx.drop_copies(done), lambda _: None)
    return len(done)
