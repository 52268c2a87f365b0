"""Modality Performed Procedure Steps in the index: kept whole, on their
patient (the same get-or-create as images and worklist items), with the
series they list."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from pacsd.domain.errors import MppsDuplicate
from pacsd.domain.mpps import series, status_of
from pacsd.domain.worklist import stored_json, text
from pacsd.index import identity
from pacsd.index.dialect import SQLITE

if TYPE_CHECKING:
    from pacsd.index.transaction import Transaction

_P = SQLITE.param
INSERT = SQLITE.insert_returning_id("mpps", ("sop_uid", "patient_pk", "status", "dataset"), ("sop_uid",))
ONE = f"SELECT id, dataset FROM mpps WHERE sop_uid = {_P}"
UPDATE = f"UPDATE mpps SET status = {_P}, dataset = {_P}, updated_at = CURRENT_TIMESTAMP WHERE id = {_P}"
SERIES = f"INSERT INTO mpps_series (mpps_pk, series_uid) VALUES ({_P}, {_P}) ON CONFLICT DO NOTHING"


def add(tx: Transaction, sop_uid: str, ds: Dataset) -> None:
    """Keep a new MPPS; MppsDuplicate if its SOP Instance UID is taken. Its
    patient (if it names a PatientID) is got or created like an image's."""
    patient_pk = None
    patient_id = text(ds, "PatientID")
    if patient_id:
        key = identity.PatientKey(patient_id, text(ds, "IssuerOfPatientID"), "")
        patient_pk, _ = identity.patient(
            tx, key, text(ds, "PatientName"), text(ds, "PatientBirthDate"), text(ds, "PatientSex")
        )
    row = tx.conn.execute(INSERT, (sop_uid, patient_pk, status_of(ds), stored_json(ds))).fetchone()
    if row is None:
        raise MppsDuplicate(f"an MPPS with SOP Instance UID {sop_uid} exists")
    _link_series(tx, int(row[0]), ds)


def stored(tx: Transaction, sop_uid: str) -> tuple[int, Dataset] | None:
    row = tx.conn.execute(ONE, (sop_uid,)).fetchone()
    return None if row is None else (int(str(row[0])), Dataset.from_json(str(row[1])))


def update(tx: Transaction, mpps_pk: int, ds: Dataset) -> None:
    tx.conn.execute(UPDATE, (status_of(ds), stored_json(ds), mpps_pk))
    _link_series(tx, mpps_pk, ds)


def _link_series(tx: Transaction, mpps_pk: int, ds: Dataset) -> None:
    for series_uid in series(ds):
        tx.conn.execute(SERIES, (mpps_pk, series_uid))
