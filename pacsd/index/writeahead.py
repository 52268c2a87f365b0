"""Write-ahead copies of stored files (see :class:`pacsd.index.models.WriteAhead`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pacsd.index.models import database

ADD = "INSERT INTO write_ahead (instance_pk, data) VALUES (?, ?)"
PENDING = "SELECT w.instance_pk, i.path, w.data FROM write_ahead w JOIN instance i ON i.id = w.instance_pk"
CHUNK = 500  # ids per DELETE, well under SQLite's limit on bound parameters


def add(conn: Any, instance_id: int, data: bytes) -> None:
    """Keep *data*, the whole Part 10 file of *instance_id*, until dropped.
    Inside the transaction that creates the instance row."""
    conn.execute(ADD, (instance_id, data))


def drop(conn: Any, instance_ids: Sequence[int]) -> None:
    """Forget the copies of *instance_ids*: their files are on disk."""
    for start in range(0, len(instance_ids), CHUNK):
        chunk = instance_ids[start : start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        conn.execute(f"DELETE FROM write_ahead WHERE instance_pk IN ({marks})", tuple(chunk))


def pending() -> Iterator[tuple[int, str, bytes]]:
    """(instance id, path relative to files/, file bytes) of every copy."""
    for instance_id, path, data in database.execute_sql(PENDING):
        yield int(instance_id), str(path), bytes(data)
