"""The caching proxy's fetch records, and what it asks the index."""

from __future__ import annotations

from typing import Any

from pacsd.domain.outcomes import FetchRecord
from pacsd.index.db import reading
from pacsd.index.models import Fetch, database


def fetched_whole(study_uid: str) -> bool:
    """Whether a fetch of the study was committed whole."""
    with reading():
        return bool(Fetch.select().where(Fetch.study_uid == study_uid, Fetch.outcome == "done").exists())


def stored_sops(study_uid: str) -> set[str]:
    """SOP Instance UIDs stored locally in the study."""
    with reading():
        rows = database.execute_sql(
            "SELECT i.sop_uid FROM instance i JOIN series se ON i.series_pk = se.id"
            " JOIN study st ON se.study_pk = st.id WHERE st.study_uid = ?",
            (study_uid,),
        )
        return {row[0] for row in rows}


RECORD = (
    "INSERT INTO fetch (study_uid, upstream, outcome, expected, received, seconds, detail) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def record(conn: Any, fetch: FetchRecord) -> None:
    """Write a fetch record, on the writer's connection *conn* (in its transaction)."""
    outcome = "done" if fetch.done else "failed"
    values = (fetch.study_uid, fetch.upstream, outcome, fetch.expected, fetch.received, fetch.seconds, fetch.detail)
    conn.execute(RECORD, values)
