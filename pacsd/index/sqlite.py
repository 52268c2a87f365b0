"""The SQLite index: :class:`pacsd.ports.Index` on one index file.

Reads come from a pool of connections (a C-FIND runs in its association's
thread); every write is a unit of work committed by the group-commit
:class:`~pacsd.index.writer.IndexWriter` on a connection of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import apsw
from pydicom.dataset import Dataset

from pacsd.domain.errors import StorageFailure
from pacsd.domain.header import Header
from pacsd.domain.outcomes import Change, FetchRecord, Linked, StoredInstance
from pacsd.domain.query import InformationModel
from pacsd.index import fetches, identity, search, writeahead
from pacsd.index.db import close_index, open_index, reading
from pacsd.index.writer import IndexWriter

T = TypeVar("T")

COUNT_NAMES = ("patients", "studies", "series", "instances", "bytes", "fetches_done", "fetches_failed")
COUNTS = (
    "SELECT (SELECT COUNT(*) FROM patient), (SELECT COUNT(*) FROM study), (SELECT COUNT(*) FROM series),"
    " (SELECT COUNT(*) FROM instance), (SELECT COALESCE(SUM(size), 0) FROM instance),"
    " (SELECT COUNT(*) FROM fetch WHERE outcome = 'done'), (SELECT COUNT(*) FROM fetch WHERE outcome = 'failed')"
)


class Transaction:
    """One unit of work on the writer's connection (:class:`pacsd.ports.IndexTransaction`)."""

    def __init__(self, conn: Any, writer: IndexWriter) -> None:
        self.conn = conn
        self._writer = writer

    def link(self, header: Header, relative_path: str, size: int, transfer_syntax: str) -> Linked:
        return identity.link(self.conn, header, relative_path, size, transfer_syntax)

    def keep_copy(self, instance_id: int, data: bytes) -> None:
        writeahead.add(self.conn, instance_id, data)

    def drop_copies(self, instance_ids: Sequence[int]) -> None:
        writeahead.drop(self.conn, instance_ids)

    def record_fetch(self, fetch: FetchRecord) -> None:
        fetches.record(self.conn, fetch)

    def before_commit(self, key: Hashable, action: Callable[[], None]) -> None:
        self._writer.before_commit(key, action)


class SqliteIndex:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """Open (creating or upgrading, unless *readonly*) the index at *path*;
        StartupError if it cannot be used."""
        self.path = path
        self._db = open_index(path, readonly=readonly)
        self._writer = IndexWriter(self._db.connect_writer)

    def start(self) -> None:
        self._writer.start()

    def close(self) -> None:
        self._writer.stop()
        close_index(self._db)

    def write(self, work: Callable[[Transaction], T], undo: Callable[[T], None]) -> T:
        def apply(conn: Any) -> T:
            return work(Transaction(conn, self._writer))

        try:
            value: T = self._writer.run(apply, undo)
        except (apsw.FullError, apsw.IOError) as exc:  # the disk, not a bug
            raise StorageFailure(f"index write failed: {exc}") from None
        return value

    def matches(self, identifier: Dataset, model: InformationModel, max_values: int) -> Iterator[Dataset]:
        return search.find(identifier, model, max_values)

    def instances(self, identifier: Dataset, model: InformationModel, max_values: int) -> list[StoredInstance]:
        with reading():
            return search.instances(identifier, model, max_values)

    def fetched_whole(self, study_uid: str) -> bool:
        return fetches.fetched_whole(study_uid)

    def stored_sops(self, study_uid: str) -> set[str]:
        return fetches.stored_sops(study_uid)

    def copies(self) -> Iterator[tuple[int, str, bytes]]:
        with reading():
            yield from writeahead.pending()

    def instance_paths(self) -> Iterator[str]:
        with reading():
            yield from (str(row[0]) for row in self._db.execute_sql("SELECT path FROM instance ORDER BY id"))

    def counts(self) -> dict[str, int]:
        with reading():
            row = self._db.execute_sql(COUNTS).fetchone()
        return dict(zip(COUNT_NAMES, (int(value) for value in row), strict=True))

    def changes_since(self, seq: int, limit: int) -> list[Change]:
        raise NotImplementedError
