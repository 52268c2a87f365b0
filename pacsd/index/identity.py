"""Identity rules: link an arriving object into the index, or refuse it.

Every function here runs inside the caller's unit of work
(:class:`pacsd.index.transaction.Transaction`), which also records each
creation in the change feed. Each get-or-create reads first (the common case: the patient, study and series
exist) and otherwise runs ``INSERT ... ON CONFLICT DO NOTHING RETURNING
id``, reading back on conflict: the INSERT, never the read, decides
whether a row is created, so there is no "check first" window for a
concurrent writer to fall into, and the UNIQUE constraints in
:mod:`pacsd.index.models` are what decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import apsw

from pacsd.domain.errors import IdentityConflict
from pacsd.domain.header import Header
from pacsd.domain.outcomes import Linked, Placement
from pacsd.index.dialect import SQLITE
from pacsd.index.matching import fold_pn

if TYPE_CHECKING:
    from pacsd.index.transaction import Transaction


@dataclass(frozen=True)
class PatientKey:
    patient_id: str
    issuer: str
    no_id_study_uid: str

    @classmethod
    def of(cls, header: Header) -> PatientKey:
        # Text fields arrive stripped of padding (by the header reader). A missing
        # issuer is '' so UNIQUE compares it; a missing ID gets a patient of
        # its own per study rather than joining every anonymous object.
        pid = header.patient_id
        return cls(pid, header.issuer, "" if pid else header.study_uid)

    def __str__(self) -> str:
        if not self.patient_id:
            return f"(no PatientID, study {self.no_id_study_uid})"
        return f"(PatientID {self.patient_id!r}, Issuer {self.issuer!r})"


# The hot path is plain SQL on the apsw connection, built once here: query
# building per call cost more than the statements themselves.
_P = SQLITE.param
PATIENT_KEY_COLUMNS = ("patient_id", "issuer", "no_id_study_uid")
PATIENT_INSERT = SQLITE.insert_returning_id(
    "patient",
    (*PATIENT_KEY_COLUMNS, "name", "name_fold", "name_fold_ideo", "name_fold_phon", "birth_date", "sex"),
    PATIENT_KEY_COLUMNS,
)
PATIENT_FIND = f"SELECT id, name FROM patient WHERE patient_id = {_P} AND issuer = {_P} AND no_id_study_uid = {_P}"
PATIENT_KEY = f"SELECT patient_id, issuer, no_id_study_uid FROM patient WHERE id = {_P}"
STUDY_INSERT = SQLITE.insert_returning_id(
    "study",
    (
        "study_uid", "patient_pk", "study_date", "study_time", "accession", "description",
        "referring_physician", "referring_fold", "study_id",
    ),
    ("study_uid",),
)  # fmt: skip
STUDY_FIND = f"SELECT id, patient_pk FROM study WHERE study_uid = {_P}"
STUDY_UID = f"SELECT study_uid FROM study WHERE id = {_P}"
SERIES_INSERT = SQLITE.insert_returning_id(
    "series",
    ("series_uid", "study_pk", "modality", "series_number", "description", "series_date", "series_time", "body_part"),
    ("series_uid",),
)
SERIES_REQUEST_INSERT = SQLITE.insert(
    "series_request", ("series_pk", "requested_procedure_id", "scheduled_procedure_step_id", "accession")
)
SERIES_FIND = f"SELECT id, study_pk FROM series WHERE series_uid = {_P}"
SERIES_UID = f"SELECT series_uid FROM series WHERE id = {_P}"
INSTANCE_INSERT = SQLITE.insert_returning_id(
    "instance",
    ("sop_uid", "series_pk", "sop_class_uid", "instance_number", "transfer_syntax", "path", "size"),
    ("sop_uid",),
)
INSTANCE_FIND = f"SELECT id, series_pk, path FROM instance WHERE sop_uid = {_P}"


def _one(conn: apsw.Connection, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
    return row


def _create(conn: apsw.Connection, insert: str, values: tuple[Any, ...]) -> int | None:
    """Run an ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``; the new
    row's id, or None if the key existed."""
    row = _one(conn, insert, values)
    return None if row is None else int(row[0])


def _existing(conn: apsw.Connection, find: str, key: tuple[Any, ...]) -> tuple[Any, ...]:
    row = _one(conn, find, key)
    assert row is not None, "a conflicting key must be readable in the same transaction"
    return row


def patient(tx: Transaction, key: PatientKey, name: str, birth_date: str, sex: str) -> tuple[int, str]:
    """Get or create the patient of *key*: its row id, and its name as the
    index has it. The key decides: an existing patient keeps its name
    whatever *name* says (a demographics change is an update, not a side
    effect of an arrival)."""
    conn = tx.conn
    k = (key.patient_id, key.issuer, key.no_id_study_uid)
    known = _one(conn, PATIENT_FIND, k)
    if known is None:
        values = (*k, name, *fold_pn(name), birth_date, sex)
        new = _create(conn, PATIENT_INSERT, values)
        if new is not None:
            tx.changed(
                "create", "patient", new, patient_id=key.patient_id, issuer=key.issuer, study_uid=key.no_id_study_uid
            )
            return new, name
        known = _existing(conn, PATIENT_FIND, k)
    return int(known[0]), str(known[1])


def patient_key(conn: apsw.Connection, pk: int) -> tuple[str, str, str]:
    row = _existing(conn, PATIENT_KEY, (pk,))
    return str(row[0]), str(row[1]), str(row[2])


def _patient(tx: Transaction, header: Header) -> tuple[int, PatientKey]:
    key = PatientKey.of(header)
    pk, _ = patient(tx, key, header.patient_name, header.birth_date, header.sex)
    return pk, key


def _study(tx: Transaction, header: Header, patient_id: int, key: PatientKey) -> int:
    conn = tx.conn
    known = _one(conn, STUDY_FIND, (header.study_uid,))
    if known is None:
        values = (
            header.study_uid,
            patient_id,
            header.study_date,
            header.study_time,
            header.accession,
            header.study_description,
            header.referring_physician,
            fold_pn(header.referring_physician)[0],
            header.study_id,
        )
        new = _create(conn, STUDY_INSERT, values)
        if new is not None:
            tx.changed("create", "study", new, patient_id=key.patient_id, issuer=key.issuer, study_uid=header.study_uid)
            return new
        known = _existing(conn, STUDY_FIND, (header.study_uid,))
    study_id, owner = known
    if owner != patient_id:
        other = PatientKey(*_existing(conn, PATIENT_KEY, (owner,)))
        raise IdentityConflict(
            f"study {header.study_uid} belongs to patient {other}, but this object names patient {key}"
        )
    return int(study_id)


def _series(tx: Transaction, header: Header, study_id: int, key: PatientKey) -> int:
    conn = tx.conn
    known = _one(conn, SERIES_FIND, (header.series_uid,))
    if known is None:
        values = (
            header.series_uid,
            study_id,
            header.modality,
            header.series_number,
            header.series_description,
            header.series_date,
            header.series_time,
            header.body_part,
        )
        new = _create(conn, SERIES_INSERT, values)
        if new is not None:
            tx.changed(
                "create",
                "series",
                new,
                patient_id=key.patient_id,
                issuer=key.issuer,
                study_uid=header.study_uid,
                series_uid=header.series_uid,
            )
            for r in header.requests:
                conn.execute(
                    SERIES_REQUEST_INSERT, (new, r.requested_procedure_id, r.scheduled_procedure_step_id, r.accession)
                )
            return new
        known = _existing(conn, SERIES_FIND, (header.series_uid,))
    series_id, parent = known
    if parent != study_id:
        (other,) = _existing(conn, STUDY_UID, (parent,))
        raise IdentityConflict(
            f"series {header.series_uid} belongs to study {other}, but this object names study {header.study_uid}"
        )
    return int(series_id)


def link(tx: Transaction, header: Header, relative_path: str, size: int, transfer_syntax: str) -> Linked:
    """Link the object described by *header* into the index.

    Runs in the unit of work *tx*. Creates whatever patient/study/series/
    instance rows are missing and records them in the change feed. Raises
    :class:`IdentityConflict` when a link already stored disagrees; the
    caller rolls the savepoint back.
    """
    conn = tx.conn
    patient_id, key = _patient(tx, header)
    study_id = _study(tx, header, patient_id, key)
    series_id = _series(tx, header, study_id, key)
    values = (
        header.sop_instance_uid,
        series_id,
        header.sop_class_uid,
        header.instance_number,
        transfer_syntax,
        relative_path,
        size,
    )
    new = _create(conn, INSTANCE_INSERT, values)
    if new is not None:
        tx.changed(
            "create",
            "instance",
            new,
            patient_id=key.patient_id,
            issuer=key.issuer,
            study_uid=header.study_uid,
            series_uid=header.series_uid,
            sop_uid=header.sop_instance_uid,
        )
        return Linked(Placement.NEW, new, relative_path)
    instance_id, parent, path = _existing(conn, INSTANCE_FIND, (header.sop_instance_uid,))
    if parent != series_id:
        (other,) = _existing(conn, SERIES_UID, (parent,))
        raise IdentityConflict(
            f"SOP instance {header.sop_instance_uid} belongs to series {other}, "
            f"but this object names series {header.series_uid}"
        )
    return Linked(Placement.DUPLICATE, int(instance_id), str(path))
