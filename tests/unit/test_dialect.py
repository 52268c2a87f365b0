"""The SQLite dialect's spellings, run on a real SQLite file: wildcards,
lists bound as one parameter, distinct lists, the upsert and the write lock;
and matching conditions built from them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from pacsd.index import matching
from pacsd.index.dialect import SQLITE

VALUES = ["ab", "aXb", "a[b", "a%b", "a_b", "AB", "abc", "b"]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    conn = apsw.Connection(str(tmp_path / "t.sqlite"))
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE, g TEXT NOT NULL DEFAULT '')")
    for n, value in enumerate(VALUES):
        conn.execute("INSERT INTO t (v, g) VALUES (?, ?)", (value, "x" if n % 2 else "y"))
    yield conn
    conn.close()


def where(conn: apsw.Connection, sql: str, params: list[object]) -> list[str]:
    return sorted(v for (v,) in conn.execute(f"SELECT v FROM t WHERE {sql}", params))


@pytest.mark.parametrize(
    ("dicom", "expected"),
    [
        ("a?b", ["a%b", "a[b", "aXb", "a_b"]),  # ? is one character, case-sensitive
        ("a*", ["a%b", "a[b", "aXb", "a_b", "ab", "abc"]),
        ("a[b", ["a[b"]),  # '[' is literal, not a character class
        ("a%*", ["a%b"]),  # '%' and '_' are not wildcards
        ("a_*", ["a_b"]),
        ("*B", ["AB"]),
    ],
)
def test_wildcards_have_dicom_semantics(conn: apsw.Connection, dicom: str, expected: list[str]) -> None:
    assert where(conn, SQLITE.wildcard("v"), [SQLITE.pattern(dicom)]) == sorted(expected)


def test_a_list_is_one_parameter(conn: apsw.Connection) -> None:
    values = ["ab", "b", *(f"none{n}" for n in range(40_000))]  # past SQLite's variable limit
    assert where(conn, SQLITE.in_list("v"), [SQLITE.list_param(values)]) == ["ab", "b"]
    patterns = [SQLITE.pattern(p) for p in ("a[*", "*c")]
    assert where(conn, SQLITE.wildcard_any("v"), [SQLITE.list_param(patterns)]) == ["a[b", "abc"]


def test_distinct_list(conn: apsw.Connection) -> None:
    (joined,) = conn.execute(f"SELECT {SQLITE.distinct_list('g')} FROM t").fetchone() or ("",)
    assert sorted(str(joined).split(",")) == ["x", "y"]


def test_insert_returning_id_is_none_on_conflict(conn: apsw.Connection) -> None:
    sql = SQLITE.insert_returning_id("t", ("v", "g"), ("v",))
    assert sql == "INSERT INTO t (v, g) VALUES (?, ?) ON CONFLICT (v) DO NOTHING RETURNING id"
    assert conn.execute(sql, ("new", "z")).fetchone() == (len(VALUES) + 1,)
    assert conn.execute(sql, ("new", "other")).fetchone() is None
    assert conn.execute("SELECT g FROM t WHERE v = 'new'").fetchall() == [("z",)]


def test_begin_write_holds_the_write_lock_from_the_start(tmp_path: Path, conn: apsw.Connection) -> None:
    other = apsw.Connection(str(tmp_path / "t.sqlite"))
    conn.execute(SQLITE.begin_write)
    try:
        with pytest.raises(apsw.BusyError):
            other.execute(SQLITE.begin_write)
    finally:
        conn.execute("ROLLBACK")
        other.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a?b\\b", ["a%b", "a[b", "aXb", "a_b", "b"]),  # one pattern, one exact value
        ("ab\\AB\\abc", ["AB", "ab", "abc"]),
        ("a[*\\*c", ["a[b", "abc"]),
        ("*", VALUES),  # universal: no condition
    ],
)
def test_text_matching_through_the_dialect(conn: apsw.Connection, query: str, expected: list[str]) -> None:
    condition = matching.text("v", query)
    if condition is None:
        assert expected == VALUES
        return
    assert matching.DIALECT is SQLITE
    assert where(conn, condition.sql, condition.params) == sorted(expected)
