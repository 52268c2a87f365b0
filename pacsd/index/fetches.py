"""The caching proxy's fetch records, and what it asks the index."""

from __future__ import annotations

import apsw

from pacsd.domain.outcomes import FetchRecord
from pacsd.index.dialect import SQLITE

_P = SQLITE.param
FETCHED_WHOLE = f"SELECT 1 FROM fetch WHERE study_uid = {_P} AND outcome = 'done' AND stale = 0 LIMIT 1"
STORED_SOPS = (
    "SELECT i.sop_uid FROM instance i JOIN series se ON i.series_pk = se.id"
    f" JOIN study st ON se.study_pk = st.id WHERE st.study_uid = {_P}"
)
RECORD = SQLITE.insert("fetch", ("study_uid", "upstream", "outcome", "expected", "received", "seconds", "detail"))


def fetched_whole(conn: apsw.Connection, study_uid: str) -> bool:
    """Whether a fetch of the study was committed whole, and nothing of
    the study was deleted since (a delete makes its fetches stale)."""
    return conn.execute(FETCHED_WHOLE, (study_uid,)).fetchone() is not None


def stored_sops(conn: apsw.Connection, study_uid: str) -> set[str]:
    """SOP Instance UIDs stored locally in the study."""
    return {str(row[0]) for row in conn.execute(STORED_SOPS, (study_uid,))}


def record(conn: apsw.Connection, fetch: FetchRecord) -> None:
    """Write a fetch record, on the writer's connection *conn* (in its transaction)."""
    outcome = "done" if fetch.done else "failed"
    values = (fetch.study_uid, fetch.upstream, outcome, fetch.expected, fetch.received, fetch.seconds, fetch.detail)
    conn.execute(RECORD, values)
