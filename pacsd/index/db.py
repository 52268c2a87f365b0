"""One index file: its connections (a pool of readers, the writer's own),
their pragmas, and bringing its schema up to date on opening.

Nothing here is process-wide: each :class:`Database` owns its connections,
so one process can hold several indexes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import apsw

from pacsd.domain.errors import StartupError
from pacsd.index.migrations import LATEST, SchemaError, migrate, version_of

__all__ = ["BUSY_TIMEOUT", "Database", "SchemaError", "close_index", "open_index"]

BUSY_TIMEOUT = 30.0  # seconds a statement waits for another process's write lock
IDLE_CONNECTIONS = 16  # kept open for the next reader; more are closed

# synchronous=FULL makes a commit durable before we answer success.
PRAGMAS = "PRAGMA foreign_keys = 1; PRAGMA synchronous = FULL"


def _busy_handler() -> Callable[[int], bool]:
    """Wait for another process's transaction: briefly and often.

    SQLite's own busy timeout sleeps 1, 2, 5, 10 ... ms between tries; the
    worker processes' commits take well under a millisecond, so that left
    the lock idle most of the time it was waited for.
    """
    since = 0.0

    def busy(attempt: int) -> bool:
        nonlocal since
        if attempt == 0:
            since = time.monotonic()
        elif time.monotonic() - since > BUSY_TIMEOUT:
            return False  # SQLITE_BUSY reaches the caller
        time.sleep(0.0002 if attempt < 50 else 0.002)
        return True

    return busy


class Database:
    """The connections to one index file.

    Readers are pooled: a C-FIND runs in its association's thread, and
    opening a connection (pragmas, then parsing the schema on its first
    statement) took a quarter of a small query's time.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        self._idle: list[apsw.Connection] = []
        self._mutex = threading.Lock()
        self._closed = False

    def connect(self) -> apsw.Connection:
        """A new connection of this index, with its pragmas and busy handler."""
        conn = apsw.Connection(str(self.path), flags=self._flags)
        try:
            conn.setbusyhandler(_busy_handler())  # one per connection
            conn.execute(PRAGMAS)
        except BaseException:
            conn.close()
            raise
        return conn

    def connect_writer(self) -> apsw.Connection:
        """A connection of its own for the index writer (outside the pool and
        any thread): whichever thread leads a commit uses it."""
        return self.connect()

    @contextmanager
    def reading(self) -> Iterator[apsw.Connection]:
        """A connection for one short read, given back on exit, also when a
        generator holding it is abandoned mid-way (a cancelled C-FIND)."""
        with self._mutex:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.connect()
        try:
            yield conn
        finally:
            self._give_back(conn)

    def _give_back(self, conn: apsw.Connection) -> None:
        with self._mutex:
            keep = not self._closed and len(self._idle) < IDLE_CONNECTIONS and conn.getautocommit()
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()

    def close(self) -> None:
        """Close every idle connection; those in use close when given back."""
        with self._mutex:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def close_index(db: Database) -> None:
    db.close()


def open_index(path: Path, *, readonly: bool = False) -> Database:
    """Open the index at *path*, creating or upgrading it unless *readonly*;
    StartupError (SchemaError for a version this pacsd cannot use) if it
    cannot be used.

    WAL lets readers (C-FIND, ``pacsd stats``) run while a store commits.
    """
    if path.is_dir():
        raise StartupError(path, "is a directory, not an index")
    if readonly and not path.is_file():
        raise StartupError(path, "no index here (has the server run with this data_dir?)")
    db = Database(path, readonly=readonly)
    try:
        with db.reading() as conn:
            if readonly:
                version = version_of(conn)
            else:
                conn.execute("PRAGMA journal_mode = WAL")  # persistent: recorded in the file
                version = migrate(conn)
    except apsw.Error as exc:
        db.close()
        raise StartupError(path, _problem(exc)) from None
    except SchemaError as exc:
        db.close()
        raise SchemaError(path, exc.problem) from None
    if version != LATEST:
        db.close()
        raise SchemaError(path, f"index schema version {version}, this pacsd reads {LATEST}")
    return db


def _problem(exc: Exception) -> str:
    """What an error on opening means, in the words of a person."""
    if isinstance(exc, apsw.NotADBError | apsw.CorruptError) or "not a database" in str(exc):
        return "not an SQLite index (corrupt, or another kind of file)"
    return f"cannot open the index: {exc}"


# A read: a context manager lending one of an index's pooled connections.
Reading = Callable[[], AbstractContextManager[apsw.Connection]]
PAGE_ROWS = 256  # matches read per short read of the index
T = TypeVar("T")


def paged(
    reading: Reading,
    page: Callable[[int, int], tuple[str, Sequence[Any]]],
    convert: Callable[[apsw.Connection, Any], T],
    page_rows: int = PAGE_ROWS,
) -> Iterator[T]:
    """The rows of a query read in pages by row id (the first column), each
    page in a short read of its own and converted inside it: no read is held
    open while results are handed on, so a client that stops reading pins no
    WAL snapshot, and a cancel stops between pages. *page(after, rows)* is
    the SQL and parameters of the next *rows* rows with an id above *after*."""
    after = 0  # row ids are positive
    while True:
        with reading() as conn:
            rows = conn.execute(*page(after, page_rows)).fetchall()
            converted = [convert(conn, row) for row in rows]
        yield from converted
        if len(rows) < page_rows:
            return
        after = cast(int, rows[-1][0])
