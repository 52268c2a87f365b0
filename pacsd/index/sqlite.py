"""The SQLite index: :class:`pacsd.ports.Index` on one index file.

Reads come from this index's pool of connections (a C-FIND runs in its
association's thread); every write is a unit of work
(:class:`~pacsd.index.transaction.Transaction`) committed by the
group-commit :class:`~pacsd.index.writer.IndexWriter` on a connection of
its own. Each :class:`SqliteIndex` owns its connections: one process can
hold several.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar, cast

import apsw
from pydicom.dataset import Dataset

from pacsd.domain.errors import StorageFailure
from pacsd.domain.outcomes import Change, StoredInstance
from pacsd.domain.query import C_FIND, InformationModel, SearchOptions
from pacsd.index import deletion, fetches, search, worklist, writeahead
from pacsd.index.db import open_index
from pacsd.index.dialect import SQLITE
from pacsd.index.transaction import Transaction
from pacsd.index.writer import IndexWriter, WriterStopped

__all__ = ["SqliteIndex", "Transaction"]

T = TypeVar("T")

COUNT_NAMES = ("patients", "studies", "series", "instances", "bytes", "fetches_done", "fetches_failed")
COUNTS = (
    "SELECT (SELECT COUNT(*) FROM patient), (SELECT COUNT(*) FROM study), (SELECT COUNT(*) FROM series),"
    " (SELECT COUNT(*) FROM instance), (SELECT COALESCE(SUM(size), 0) FROM instance),"
    " (SELECT COUNT(*) FROM fetch WHERE outcome = 'done'), (SELECT COUNT(*) FROM fetch WHERE outcome = 'failed')"
)
INSTANCE_PATHS = "SELECT path FROM instance ORDER BY id"
CHANGES = (
    "SELECT seq, at, action, level, patient_id, issuer, study_uid, series_uid, sop_uid FROM change"
    f" WHERE seq > {SQLITE.param} ORDER BY seq LIMIT {SQLITE.param}"
)


def _utc(at: str) -> str:
    """SQLite's CURRENT_TIMESTAMP ('YYYY-MM-DD HH:MM:SS', UTC) as ISO 8601 with 'Z'."""
    return at.replace(" ", "T", 1) + "Z"


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
        self._db.close()

    def write(self, work: Callable[[Transaction], T], undo: Callable[[T], None]) -> T:
        def apply(conn: apsw.Connection) -> T:
            return work(Transaction(conn, self._writer))

        try:
            value: T = self._writer.run(apply, undo)
        except (apsw.FullError, apsw.IOError) as exc:  # the disk, not a bug
            raise StorageFailure(f"index write failed: {exc}") from None
        except WriterStopped:
            raise StorageFailure("index write refused: the index is closing") from None
        return value

    def matches(
        self, identifier: Dataset, model: InformationModel, max_values: int, options: SearchOptions = C_FIND
    ) -> Iterator[Dataset]:
        return search.find(self._db.reading, identifier, model, max_values, options=options)

    def instances(self, identifier: Dataset, model: InformationModel, max_values: int) -> list[StoredInstance]:
        with self._db.reading() as conn:
            return search.instances(conn, identifier, model, max_values)

    def fetched_whole(self, study_uid: str) -> bool:
        with self._db.reading() as conn:
            return fetches.fetched_whole(conn, study_uid)

    def stored_sops(self, study_uid: str) -> set[str]:
        with self._db.reading() as conn:
            return fetches.stored_sops(conn, study_uid)

    def copies(self) -> Iterator[tuple[int, str, bytes]]:
        with self._db.reading() as conn:
            yield from writeahead.copies(conn)

    def instance_paths(self) -> Iterator[str]:
        with self._db.reading() as conn:
            cursor = conn.execute(INSTANCE_PATHS)
            try:
                yield from (str(row[0]) for row in cursor)
            finally:
                cursor.close()

    def removals(self) -> list[str]:
        with self._db.reading() as conn:
            return [str(row[0]) for row in conn.execute(deletion.ALL_LISTED)]

    def counts(self) -> dict[str, int]:
        with self._db.reading() as conn:
            row = conn.execute(COUNTS).fetchone()
        assert row is not None
        return dict(zip(COUNT_NAMES, (int(value) for value in row), strict=True))

    def worklist_matches(
        self, identifier: Dataset, include_done: bool, own_station: str, scheduled_since: str = ""
    ) -> Iterator[Dataset]:
        where = worklist.conditions(identifier, include_done, own_station, scheduled_since)
        return worklist.matches(self._db.reading, where)

    def changes_since(self, seq: int, limit: int) -> list[Change]:
        """At most *limit* change-feed entries with a sequence number above
        *seq*, oldest first (page on with the last one's ``seq``)."""
        if limit < 0:
            raise ValueError(f"limit must not be negative: {limit}")
        with self._db.reading() as conn:
            rows = conn.execute(CHANGES, (seq, limit)).fetchall()
        return [Change(cast(int, row[0]), _utc(str(row[1])), *map(str, row[2:])) for row in rows]
