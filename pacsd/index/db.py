"""Opening the index: apsw connection, pragmas and the schema version."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
from peewee import DatabaseError, Model
from playhouse.apsw_ext import APSWDatabase
from playhouse.pool import PooledDatabase

from pacsd.domain.errors import StartupError
from pacsd.index.models import MODELS, Fetch, WriteAhead, database

# Bumped with each schema change; upgrades go in UPGRADES[from_version].
SCHEMA_VERSION = 3
UPGRADES: dict[int, list[type[Model]]] = {
    1: [Fetch],  # 1 -> 2: the caching proxy's fetch records
    2: [WriteAhead],  # 2 -> 3: bytes of files not yet flushed
}


BUSY_TIMEOUT = 30.0  # seconds a statement waits for another process's write lock


class SchemaError(StartupError):
    """The index was written by a newer pacsd, or cannot be upgraded."""


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


class _Apsw(APSWDatabase):  # type: ignore[misc]
    def _connect(self) -> Any:
        conn = super()._connect()
        conn.setbusyhandler(_busy_handler())  # one per connection
        return conn


IDLE_CONNECTIONS = 16  # kept open for the next reader; more are closed


class _Database(PooledDatabase, _Apsw):  # type: ignore[misc]
    """Connections are pooled: a C-FIND runs in its association's thread,
    and opening a connection (pragmas, then parsing the schema on its
    first statement) took a quarter of a small query's time."""

    def _can_reuse(self, conn: Any) -> bool:
        return len(self._connections) < IDLE_CONNECTIONS and not conn.in_transaction

    def connect_writer(self) -> Any:
        """A connection of its own for the index writer (outside the pool and
        any thread): whichever thread leads a commit uses it."""
        return _Apsw._connect(self)


def close_index(db: APSWDatabase) -> None:
    """Close *db* for good: this thread's connection and every pooled one."""
    db.close()
    db.close_all()


def open_index(path: Path, *, readonly: bool = False) -> APSWDatabase:
    """Open (creating if needed) the index at *path* and bind the models.

    WAL lets readers (C-FIND, ``pacsd stats``) run while a store commits;
    synchronous=FULL makes a commit durable before we answer success.
    """
    if path.is_dir():
        raise StartupError(path, "is a directory, not an index")
    if readonly and not path.is_file():
        raise StartupError(path, "no index here (has the server run with this data_dir?)")
    flags = {"flags": apsw.SQLITE_OPEN_READONLY} if readonly else {}
    db = _Database(
        str(path),
        pragmas={"foreign_keys": 1, "synchronous": "full"}
        if readonly
        else {
            "journal_mode": "wal",
            "synchronous": "full",
            "foreign_keys": 1,
        },
        max_connections=None,  # no limit: readers are bounded by associations
        **flags,
    )
    database.initialize(db)
    try:
        db.connect()
        version = _migrate(db) if not readonly else db.execute_sql("PRAGMA user_version").fetchone()[0]
    except (apsw.Error, DatabaseError) as exc:  # peewee re-raises some apsw errors as its own
        _abandon(db)
        raise StartupError(path, _problem(exc)) from None
    except SchemaError as exc:
        _abandon(db)
        raise SchemaError(path, exc.problem) from None
    if version != SCHEMA_VERSION:
        _abandon(db)
        raise SchemaError(path, f"index schema version {version}, this pacsd reads {SCHEMA_VERSION}")
    return db


def _abandon(db: APSWDatabase) -> None:
    try:
        close_index(db)
    except Exception:  # a connection that never opened: nothing to close
        pass


def _problem(exc: Exception) -> str:
    """What an error on opening means, in the words of a person."""
    if isinstance(exc, apsw.NotADBError | apsw.CorruptError) or "not a database" in str(exc):
        return "not an SQLite index (corrupt, or another kind of file)"
    return f"cannot open the index: {exc}"


def _migrate(db: APSWDatabase) -> int:
    """Create or upgrade the schema; returns the version it is at now."""
    with db.atomic("IMMEDIATE"):
        version = db.execute_sql("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaError(
                db.database,
                f"index schema version {version} is newer than this pacsd ({SCHEMA_VERSION}); upgrade pacsd",
            )
        if version == 0:
            db.create_tables(MODELS)
        else:
            for step in range(version, SCHEMA_VERSION):
                db.create_tables(UPGRADES[step])
        if version != SCHEMA_VERSION:
            db.execute_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION


@contextmanager
def reading() -> Iterator[None]:
    """A connection for this thread's reads (C-FIND, retrieve selection).

    Taken from the pool if the thread has none and given back on exit, also
    when a generator holding it is abandoned mid-way (a cancelled C-FIND).
    """
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        yield
    finally:
        if opened:
            database.close()
