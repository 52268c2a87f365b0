"""The index writer on a real index: concurrent work commits in groups, a
failing piece rolls back alone, a failing commit undoes its whole group."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from pacsd.index.db import Database, close_index, open_index
from pacsd.index.writer import IndexWriter, WriterStopped


@pytest.fixture
def writer(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = open_index(tmp_path / "index.sqlite")
    with db.reading() as conn:
        conn.execute("CREATE TABLE t (n INTEGER UNIQUE)")
    w = IndexWriter(db.connect_writer)
    w.start()
    yield w, db
    w.stop()
    close_index(db)


def rows(db: Database) -> list[int]:
    with db.reading() as conn:
        return sorted(n for (n,) in conn.execute("SELECT n FROM t"))


def insert(n: int) -> Any:
    def apply(conn: Any) -> int:
        conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return n

    return apply


def test_many_threads_each_get_their_own_outcome(writer) -> None:  # type: ignore[no-untyped-def]
    w, db = writer
    outcomes: dict[int, object] = {}

    def one(n: int) -> None:
        try:
            # Odd numbers collide with an even one: UNIQUE refuses them alone.
            outcomes[n] = w.run(insert(n if n % 2 == 0 else n - 1), lambda _: None)
        except Exception as exc:
            outcomes[n] = type(exc).__name__

    threads = [threading.Thread(target=one, args=(n,)) for n in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rows(db) == list(range(0, 200, 2))
    evens = [outcomes[n] for n in range(0, 200, 2)]
    odds = [outcomes[n] for n in range(1, 200, 2)]
    # Each even/odd pair raced for one row: exactly one of them won it.
    assert sum(1 for o in evens + odds if isinstance(o, int)) == 100
    assert all(o == "ConstraintError" for o in evens + odds if not isinstance(o, int))


def test_a_failing_barrier_undoes_the_whole_group(writer) -> None:  # type: ignore[no-untyped-def]
    w, db = writer
    undone: list[int] = []

    def disk_full() -> None:
        raise OSError(28, "No space left on device")

    def apply(conn: Any) -> int:
        conn.execute("INSERT INTO t (n) VALUES (1)")
        w.before_commit("disk", disk_full)
        return 1

    with pytest.raises(OSError):
        w.run(apply, undone.append)
    assert undone == [1] and rows(db) == []
    assert w.run(insert(2), lambda _: None) == 2  # and it keeps working
    assert rows(db) == [2]


def test_work_after_stop_is_refused(tmp_path: Path) -> None:
    db = open_index(tmp_path / "index.sqlite")
    w = IndexWriter(db.connect_writer)
    w.start()
    w.stop()
    with pytest.raises(WriterStopped):
        w.run(lambda conn: None, lambda _: None)
    close_index(db)
