"""The caching proxy's fetch records, and what it asks the index."""

from __future__ import annotations

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


def record(
    study_uid: str, upstream: str, done: bool, expected: int, received: int, seconds: float, detail: str
) -> None:
    """Write a fetch record; inside the caller's transaction (the writer)."""
    Fetch.create(
        study_uid=study_uid, upstream=upstream, outcome="done" if done else "failed", expected=expected,
        received=received, seconds=seconds, detail=detail,
    )  # fmt: skip
