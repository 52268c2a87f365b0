"""One object in: validate, write the file, index it, answer.

The same path serves C-STORE (and STOW-RS) from a modality, imports from
disk, and (all of one study at once) objects fetched by the caching proxy. Order matters and is the whole point:

1. read and check the header (nothing written yet);
2. write the Part 10 file under a temporary name;
3. on the index writer, in one savepoint: link the rows; for a new
   instance rename the file into place and make its bytes durable with the
   commit: a small object's bytes go into the index in the same transaction
   (a write-ahead copy, flushed to its file later by the syncer); a large
   one's file was fsynced in step 2 and its directory is fsynced before the
   commit (once for all objects of one series in the group);
4. return only after the commit. A refusal or a failed commit removes the
   file, so nothing is left behind.

Duplicate policy: re-sending an object whose dataset bytes equal the stored
ones succeeds and changes nothing. A different object under a stored SOP
Instance UID keeps the stored one and is answered with a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from pacsd.domain.errors import RequestMismatch, StorageFailure, StudyMismatch
from pacsd.domain.header import Header
from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import FetchRecord, Linked, Outcome, Placement, Result
from pacsd.domain.part10 import dataset_extent, file_meta, file_parts
from pacsd.domain.received import Received, Spooled, received_from_file, validate
from pacsd.ports import FileStore, Flusher, Index, IndexTransaction

# Objects up to this size (file bytes) travel in the commit as a write-ahead
# copy: one flush per group of objects instead of three (file, directory,
# WAL) with the first two paid by each object. Above it, copying the bytes
# through the WAL (and its checkpoint) costs more than the flushes it saves
# (paired runs, write-ahead against fsync: 64 KB objects 1.11x, 120 KB
# 1.07x over one association and 0.92x over four, 200 KB 0.86x, 512 KB 0.6x).
WRITE_AHEAD_MAX = 128 * 1024
COMPARE_CHUNK = 1 << 20  # bytes of a stored duplicate read at a time


@contextmanager
def _chunks(dataset: bytes | Spooled) -> Iterator[Iterator[bytes | memoryview]]:
    """*dataset* a chunk at a time; a spooled one read, not mapped (mapped
    pages would count in the process's memory)."""
    if not isinstance(dataset, Spooled):
        view = memoryview(dataset)
        yield (view[start : start + COMPARE_CHUNK] for start in range(0, len(view), COMPARE_CHUNK))
        return
    with open(dataset.path, "rb") as file:
        yield iter(lambda: file.read(COMPARE_CHUNK), b"")


class Ingest:
    def __init__(self, storage: FileStore, index: Index, flusher: Flusher, limits: Limits) -> None:
        self.storage = storage
        self.limits = limits
        self.index = index
        self.flusher = flusher

    def store(self, received: Received, study_uid: str | None = None) -> Outcome:
        """Store *received*; raise a :class:`pacsd.domain.errors.Refusal` if
        refused (StudyMismatch if *study_uid* is given and is not its study)."""
        header = validate(received, self.limits)
        if study_uid is not None and header.study_uid != study_uid:
            raise StudyMismatch(
                f"SOP instance {header.sop_instance_uid} belongs to study {header.study_uid}, "
                f"not to {study_uid} named in the request"
            )
        relative = self.storage.relative_path(header.study_uid, header.series_uid, header.sop_instance_uid)
        meta = file_meta(received)
        size = len(meta) + len(received.dataset)
        dataset = received.dataset
        # Only a small object is joined into one bytes (its write-ahead copy);
        # a large one is written from its two parts, never copied whole, and
        # a spooled one is copied from its file by the kernel.
        copy = meta + dataset if size <= WRITE_AHEAD_MAX and isinstance(dataset, bytes) else None
        try:
            if copy is not None:
                temp = self.storage.write_temp([copy], sync=False)
            else:
                chunks, tail = file_parts(meta, dataset)
                temp = self.storage.write_temp(chunks, tail=tail)
        except OSError as exc:
            raise StorageFailure(f"cannot write file: {exc.strerror or exc}") from None
        placed = False
        try:
            linked: Linked = self.index.write(
                lambda tx: self._link(tx, header, received, temp, relative, size, copy),
                self._unplace,
            )
            placed = linked.placement is Placement.NEW
        except OSError as exc:  # placing the file; a full disk in the index is StorageFailure already
            raise StorageFailure(f"cannot store file: {exc.strerror or exc}") from None
        finally:
            if not placed:  # a placed file was renamed away: no unlink, no lock on tmp/
                self.storage.remove(temp)
        if placed:
            if copy is not None:
                self.flusher.written(linked.instance_id)
            return Outcome(Result.STORED, header)
        if self._same_dataset(linked.stored_path, received.dataset):
            return Outcome(Result.ALREADY_STORED, header)
        return Outcome(
            Result.DUPLICATE_KEPT,
            header,
            f"SOP instance {header.sop_instance_uid} is already stored with different "
            "content; the stored object was kept and this one discarded",
        )

    def store_all(self, files: list[Path], fetch: FetchRecord) -> int:
        """Index every Part 10 file in *files* (fsynced, on this filesystem)
        and the record of the *fetch* that brought them in one unit of work,
        or none: any refusal, including a file of another study than the
        fetch's, rolls all of them back and removes the files it had placed.
        Returns how many objects were new."""
        expect_study = fetch.study_uid
        items = []
        for path in files:
            received = received_from_file(path)
            header = validate(received, self.limits)
            if header.study_uid != expect_study:
                raise RequestMismatch(
                    f"{header.sop_instance_uid} belongs to study {header.study_uid}, not {expect_study}"
                )
            relative = self.storage.relative_path(header.study_uid, header.series_uid, header.sop_instance_uid)
            items.append((header, received, path, relative, path.stat().st_size))

        def apply(tx: IndexTransaction) -> list[Linked]:
            linked: list[Linked] = []
            try:
                for header, received, path, relative, size in items:
                    linked.append(self._link(tx, header, received, path, relative, size))
                tx.record_fetch(fetch)
            except BaseException:
                for done in linked:
                    self._unplace(done)
                raise
            return linked

        def undo(linked: list[Linked]) -> None:
            for done in linked:
                self._unplace(done)

        try:
            results: list[Linked] = self.index.write(apply, undo)
        except OSError as exc:
            raise StorageFailure(f"cannot store files: {exc.strerror or exc}") from None
        return sum(1 for linked in results if linked.placement is Placement.NEW)

    def _link(
        self,
        tx: IndexTransaction,
        header: Header,
        received: Received,
        temp: str | Path,
        relative: str,
        size: int,
        copy: bytes | None = None,
    ) -> Linked:
        """Runs in the unit of work *tx*. The placed file is
        made durable by this commit: through *copy*, its write-ahead bytes,
        if given, else by fsyncing the directories its rename changed."""
        linked = tx.link(header, relative, size, received.transfer_syntax)
        if linked.placement is Placement.NEW:
            try:
                changed = self.storage.place(temp, relative)
                if copy is not None:
                    tx.keep_copy(linked.instance_id, copy)
                else:
                    for directory in changed:
                        tx.before_commit(directory, partial(self.storage.sync_directory, directory))
            except BaseException:
                self._unplace(linked)
                raise
        return linked

    def _unplace(self, linked: Linked) -> None:
        if linked.placement is Placement.NEW:
            self.storage.remove(self.storage.absolute(linked.stored_path))

    def _same_dataset(self, relative: str, dataset: bytes | Spooled) -> bool:
        """Whether the stored file's dataset bytes are exactly *dataset*,
        compared a chunk at a time (either may be gigabytes)."""
        try:
            with open(self.storage.absolute(relative), "rb") as stored:
                _, length = dataset_extent(stored)
                if length != len(dataset):
                    return False
                with _chunks(dataset) as received:
                    return all(stored.read(len(chunk)) == chunk for chunk in received)
        except (OSError, ValueError):
            return False
