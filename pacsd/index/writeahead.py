"""Write-ahead copies of stored files (the ``write_ahead`` table, migration 3)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apsw

from pacsd.index.dialect import SQLITE

ADD = SQLITE.insert("write_ahead", ("instance_pk", "data"))
# Every copy's ids in one parameter: one statement whatever their number.
DROP = f"DELETE FROM write_ahead WHERE {SQLITE.in_list('instance_pk')}"
ALL_COPIES = "SELECT w.instance_pk, i.path, w.data FROM write_ahead w JOIN instance i ON i.id = w.instance_pk"


def add(conn: apsw.Connection, instance_id: int, data: bytes) -> None:
    """Keep *data*, the whole Part 10 file of *instance_id*, until dropped.
    Inside the transaction that creates the instance row."""
    conn.execute(ADD, (instance_id, data))


def drop(conn: apsw.Connection, instance_ids: Sequence[int]) -> None:
    """Forget the copies of *instance_ids*: their files are on disk."""
    if instance_ids:
        conn.execute(DROP, (SQLITE.list_param([int(i) for i in instance_ids]),))


def copies(conn: apsw.Connection) -> Iterator[tuple[int, str, bytes]]:
    """(instance id, path relative to files/, file bytes) of every copy."""
    cursor = conn.execute(ALL_COPIES)
    try:
        for instance_id, path, data in cursor:
            yield int(instance_id), str(path), bytes(data)
    finally:
        cursor.close()
