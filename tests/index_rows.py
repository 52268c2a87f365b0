"""Reading a data dir's index from outside pacsd, read-only (what a test
checks after or beside the server)."""

from __future__ import annotations

from pathlib import Path

import apsw


def copies(data_dir: Path) -> int:
    """How many write-ahead copies wait in the index."""
    db = apsw.Connection(str(data_dir / "index.sqlite"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        (count,) = db.execute("SELECT count(*) FROM write_ahead").fetchone()
        return int(count)
    finally:
        db.close()
