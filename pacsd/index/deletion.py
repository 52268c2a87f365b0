"""Removing a study, series or instance from the index, in the caller's
unit of work (:class:`pacsd.index.transaction.Transaction`).

The rows go, each in the change feed as a ``delete``, and the files they
named are listed in ``removal`` (migration 7) by the same transaction; the
caller unlinks them after the commit (:mod:`pacsd.services.deletion`).
Parents left empty go too: a series without instances, a study without
series, and its patient if no study, worklist item or MPPS refers to it.
Write-ahead copies and series request items go with their rows (ON DELETE
CASCADE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pacsd.domain.deletion import Deleted, DeleteTarget
from pacsd.domain.outcomes import StoredInstance
from pacsd.index.dialect import SQLITE

if TYPE_CHECKING:
    from pacsd.index.transaction import Transaction

_P = SQLITE.param
STUDY = (
    "SELECT st.id, st.patient_pk, p.patient_id, p.issuer, p.no_id_study_uid FROM study st"
    f" JOIN patient p ON p.id = st.patient_pk WHERE st.study_uid = {_P}"
)
ALL_SERIES = f"SELECT id, series_uid FROM series WHERE study_pk = {_P} ORDER BY id"
ONE_SERIES = f"SELECT id, series_uid FROM series WHERE study_pk = {_P} AND series_uid = {_P}"
_INSTANCE = "SELECT id, sop_uid, sop_class_uid, transfer_syntax, path FROM instance"
ALL_INSTANCES = f"{_INSTANCE} WHERE series_pk = {_P} ORDER BY id"
ONE_INSTANCE = f"{_INSTANCE} WHERE series_pk = {_P} AND sop_uid = {_P}"
LIST_FILE = f"INSERT INTO removal (path) VALUES ({_P}) ON CONFLICT (path) DO NOTHING"
DELETE_INSTANCE = f"DELETE FROM instance WHERE id = {_P}"
SERIES_EMPTY = f"SELECT NOT EXISTS (SELECT 1 FROM instance WHERE series_pk = {_P})"
DELETE_SERIES = f"DELETE FROM series WHERE id = {_P}"
STUDY_EMPTY = f"SELECT NOT EXISTS (SELECT 1 FROM series WHERE study_pk = {_P})"
DELETE_STUDY = f"DELETE FROM study WHERE id = {_P}"
# Everything with a foreign key to patient (ON DELETE RESTRICT).
PATIENT_UNUSED = (
    f"SELECT NOT EXISTS (SELECT 1 FROM study WHERE patient_pk = {_P})"
    f" AND NOT EXISTS (SELECT 1 FROM worklist_item WHERE patient_pk = {_P})"
    f" AND NOT EXISTS (SELECT 1 FROM mpps WHERE patient_pk = {_P})"
)
DELETE_PATIENT = f"DELETE FROM patient WHERE id = {_P}"
STALE_FETCHES = f"UPDATE fetch SET stale = 1 WHERE study_uid = {_P} AND stale = 0"
PENDING = (
    f"SELECT r.path, EXISTS (SELECT 1 FROM instance i WHERE i.path = r.path) FROM removal r ORDER BY r.path LIMIT {_P}"
)
DROP = f"DELETE FROM removal WHERE {SQLITE.in_list('path')}"
ALL_LISTED = "SELECT path FROM removal ORDER BY path"


def _scalar(tx: Transaction, sql: str, params: tuple[Any, ...]) -> bool:
    row = tx.conn.execute(sql, params).fetchone()
    return bool(row and row[0])


def delete(tx: Transaction, target: DeleteTarget) -> Deleted | None:
    """Remove the rows of *target* and list its files for removal; None
    (nothing changed) if no such study, series in it, or instance in that."""
    conn = tx.conn
    study: tuple[Any, ...] | None = conn.execute(STUDY, (target.study_uid,)).fetchone()
    if study is None:
        return None
    study_pk, patient_pk = int(study[0]), int(study[1])
    patient_id, issuer, no_id_study = str(study[2]), str(study[3]), str(study[4])
    series: list[tuple[Any, ...]]
    if target.series_uid:
        series = conn.execute(ONE_SERIES, (study_pk, target.series_uid)).fetchall()
    else:
        series = conn.execute(ALL_SERIES, (study_pk,)).fetchall()
    if not series:
        return None
    who = {"patient_id": patient_id, "issuer": issuer, "study_uid": target.study_uid}
    instances: list[StoredInstance] = []
    removed_series: list[str] = []
    for series_row in series:
        series_pk, series_uid = int(series_row[0]), str(series_row[1])
        rows: list[tuple[Any, ...]]
        if target.sop_uid:
            rows = conn.execute(ONE_INSTANCE, (series_pk, target.sop_uid)).fetchall()
            if not rows:
                return None
        else:
            rows = conn.execute(ALL_INSTANCES, (series_pk,)).fetchall()
        for row in rows:
            instance = StoredInstance(str(row[1]), str(row[2]), str(row[3]), str(row[4]))
            conn.execute(LIST_FILE, (instance.path,))
            conn.execute(DELETE_INSTANCE, (row[0],))
            tx.changed("delete", "instance", int(row[0]), series_uid=series_uid, sop_uid=instance.sop_uid, **who)
            instances.append(instance)
        if _scalar(tx, SERIES_EMPTY, (series_pk,)):
            conn.execute(DELETE_SERIES, (series_pk,))
            tx.changed("delete", "series", series_pk, series_uid=series_uid, **who)
            removed_series.append(series_uid)
    study_gone = _scalar(tx, STUDY_EMPTY, (study_pk,))
    patient_gone = False
    if study_gone:
        conn.execute(DELETE_STUDY, (study_pk,))
        tx.changed("delete", "study", study_pk, **who)
        if _scalar(tx, PATIENT_UNUSED, (patient_pk,) * 3):
            conn.execute(DELETE_PATIENT, (patient_pk,))
            tx.changed("delete", "patient", patient_pk, patient_id=patient_id, issuer=issuer, study_uid=no_id_study)
            patient_gone = True
    conn.execute(STALE_FETCHES, (target.study_uid,))
    return Deleted(target, patient_id, issuer, instances, removed_series, study_gone, patient_gone)


def pending(tx: Transaction, limit: int) -> list[tuple[str, bool]]:
    """Up to *limit* listed files: (path relative to files/, whether an
    instance row names it again, so its file must stay)."""
    return [(str(path), bool(kept)) for path, kept in tx.conn.execute(PENDING, (limit,))]


def drop(tx: Transaction, paths: list[str]) -> None:
    if paths:
        tx.conn.execute(DROP, (SQLITE.list_param(paths),))
