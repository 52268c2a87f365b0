"""The staging area: objects of fetches in progress, and the locks that
make one fetch per study and at most ``max_fetches`` per upstream.

Layout under ``data_dir/staging``::

    fetch-<message id>/meta.json     upstream AE title, study, expected count
    fetch-<message id>/<sop>.dcm     arrived objects (validated, fsynced)
    locks/                           flock files (study, upstream slots)

The directory is the registry shared by all worker processes: an upstream's
C-STORE sub-operations for a C-MOVE may reach any worker, and carry the
Move Originator Message ID of the fetch's C-MOVE, which names the
directory. Nothing in here is indexed; startup removes all of it but the
locks.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pacsd.domain import uid
from pacsd.domain.errors import NoFetchWaiting
from pacsd.domain.header import Header
from pacsd.domain.limits import Limits
from pacsd.domain.part10 import file_meta, file_parts
from pacsd.domain.received import Received, validate
from pacsd.ports import FileStore

LOCK_POLL = 0.05  # seconds between tries of a busy lock


@dataclass(frozen=True)
class StagedFetch:
    message_id: int
    directory: Path
    upstream_ae: str

    def objects(self) -> list[Path]:
        return sorted(self.directory.glob("*.dcm"))


class Staging:
    def __init__(self, storage: FileStore, limits: Limits) -> None:
        self.storage = storage
        self.limits = limits
        self.root = storage.root / "staging"
        self.locks = self.root / "locks"

    def make_layout(self) -> None:
        self.locks.mkdir(parents=True, exist_ok=True)

    def clear(self) -> int:
        """Remove every staged fetch (at startup: none is running). Returns
        how many there were."""
        self.make_layout()
        stale = [p for p in self.root.iterdir() if p.is_dir() and p != self.locks]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return len(stale)

    def open(self, upstream_ae: str, study_uid: str, expected: int) -> StagedFetch:
        """A new fetch directory, named by a Message ID no other fetch uses."""
        while True:
            message_id = random.randint(1, 65535)
            directory = self.root / f"fetch-{message_id}"
            try:
                directory.mkdir()
                break
            except FileExistsError:
                continue
        meta = {"upstream_ae": upstream_ae, "study_uid": study_uid, "expected": expected, "pid": os.getpid()}
        (directory / "meta.json").write_text(json.dumps(meta))
        return StagedFetch(message_id, directory, upstream_ae)

    def discard(self, fetch: StagedFetch) -> None:
        """Remove *fetch*'s directory and whatever is still in it. Renamed
        first, so a late arrival cannot write into it any more."""
        dead = self.root / f"dead-{uuid.uuid4().hex}"
        try:
            fetch.directory.rename(dead)
        except FileNotFoundError:
            return
        shutil.rmtree(dead, ignore_errors=True)
        if dead.exists():  # an arrival slipped a file in while it was listed
            shutil.rmtree(dead, ignore_errors=True)

    def stage(self, message_id: int, calling_ae: str, received: Received) -> Header:
        """Validate an arrival of fetch *message_id* from *calling_ae* exactly
        as ingest would, and keep it in the fetch's directory. Raises a
        Refusal (the sender gets its status) if it is invalid or if no such
        fetch is running."""
        directory = self.root / f"fetch-{message_id}"
        try:
            meta = json.loads((directory / "meta.json").read_text())
        except (OSError, ValueError):
            raise NoFetchWaiting(f"no fetch is waiting for Move Originator Message ID {message_id}") from None
        if meta["upstream_ae"] != calling_ae:
            raise NoFetchWaiting(f"fetch {message_id} is from {meta['upstream_ae']}, not {calling_ae}")
        header = validate(received, self.limits)
        uid.require(header.sop_instance_uid, "SOP Instance UID used in a path")
        try:
            chunks, tail = file_parts(file_meta(received), received.dataset)
            temp = self.storage.write_temp(chunks, directory, tail=tail)
            os.rename(temp, directory / f"{header.sop_instance_uid}.dcm")
        except FileNotFoundError:
            raise NoFetchWaiting(f"fetch {message_id} ended while this object arrived") from None
        return header

    @contextmanager
    def study_lock(self, study_uid: str, watch: Callable[[], None], timeout: float) -> Iterator[None]:
        """Hold the study's fetch lock (one fetch per study, across workers)."""
        uid.require(study_uid, "Study Instance UID used in a path")
        with _locked([self.locks / f"study-{study_uid}.lock"], watch, timeout):
            yield

    @contextmanager
    def slot(self, upstream: str, count: int, watch: Callable[[], None], timeout: float) -> Iterator[None]:
        """Hold one of *count* fetch slots of *upstream*."""
        with _locked([self.locks / f"slot-{upstream}-{n}.lock" for n in range(count)], watch, timeout):
            yield


class LockTimeout(Exception):
    pass


@contextmanager
def _locked(candidates: list[Path], watch: Callable[[], None], timeout: float) -> Iterator[None]:
    """flock one of *candidates*, calling *watch* while waiting (it raises
    to give up, e.g. when the client cancels)."""
    handles = [path.open("ab") for path in candidates]
    deadline = time.monotonic() + timeout
    try:
        while True:
            for handle in handles:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                return
            if time.monotonic() > deadline:
                raise LockTimeout(f"waited {timeout:.0f} s for {candidates[0].stem}")
            watch()
            time.sleep(LOCK_POLL)
    finally:
        for handle in handles:
            handle.close()
