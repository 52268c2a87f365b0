"""Worklist items in the index: storing one on its patient, and the SQL a
Modality Worklist query becomes (PS3.4 K.6.1.2 matching keys).

An item's patient comes from the same get-or-create as a stored image's
(:func:`pacsd.index.identity.patient`), so the two can never name two
patients for one key; its Study Instance UID may not belong to another
patient's images or items either. The item itself is kept whole, as DICOM
JSON, so any return key a modality asks for can be answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import apsw
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacsd.domain.errors import IdentityConflict, InvalidQuery, WorklistConflict
from pacsd.domain.query import text_value
from pacsd.domain.worklist import DONE, NOT_STARTED, SPS, WorklistEntry, WorklistItem, stored_json
from pacsd.index import identity, matching
from pacsd.index.db import Reading, paged
from pacsd.index.dialect import SQLITE
from pacsd.index.matching import Condition, fold_pn

if TYPE_CHECKING:
    from pacsd.index.transaction import Transaction

_P = SQLITE.param
_COLUMNS = (
    "patient_pk", "study_uid", "sps_id", "digest", "accession", "requested_procedure_id", "name_fold",
    "name_fold_ideo", "name_fold_phon", "modality", "start_date", "start_time", "start_at", "performer_fold",
    "status", "dataset",
)  # fmt: skip
INSERT = SQLITE.insert_returning_id("worklist_item", _COLUMNS, ("study_uid", "sps_id"))
STATION_INSERT = SQLITE.insert("worklist_station", ("item_pk", "ae"))
EXISTING = f"SELECT digest, dataset, status FROM worklist_item WHERE study_uid = {_P} AND sps_id = {_P}"
STUDY_OWNERS = (
    f"SELECT patient_pk FROM study WHERE study_uid = {_P}"
    f" UNION SELECT patient_pk FROM worklist_item WHERE study_uid = {_P}"
)
REMOVE = f"DELETE FROM worklist_item WHERE study_uid = {_P} AND sps_id = {_P}"
SET_STATUS = (
    f"UPDATE worklist_item SET status = {_P}, dataset = {_P}, updated_at = CURRENT_TIMESTAMP"
    f" WHERE study_uid = {_P} AND sps_id = {_P}"
)
ONE = f"SELECT dataset FROM worklist_item WHERE study_uid = {_P} AND sps_id = {_P}"
MATCHES = "SELECT w.id, w.dataset FROM worklist_item w JOIN patient p ON p.id = w.patient_pk WHERE {where}"
PAGE = f" AND w.id > {_P} ORDER BY w.id LIMIT {_P}"


def start_at(date: str, time: str) -> str:
    """Date and time as one sortable string, for combined range matching
    (C.2.2.2.5): YYYYMMDDHHMMSS.FFFFFF, a missing time as midnight."""
    full = "000000.000000"
    time = time.replace(":", "")
    return date + time + full[len(time) :] if len(time) <= 6 else date + time + "0" * (13 - len(time))


def add(tx: Transaction, item: WorklistItem) -> tuple[WorklistEntry, str]:
    """Store *item* on its patient (got or created); the entry, and the
    patient's name as the index has it (it may differ from the item's: the
    key decides the patient). Identical re-adds change nothing."""
    conn = tx.conn
    key = identity.PatientKey(item.patient_id, item.issuer, "")
    patient_pk, name_on_record = identity.patient(tx, key, item.patient_name, item.birth_date, item.sex)
    owners = {int(str(row[0])) for row in conn.execute(STUDY_OWNERS, (item.study_uid, item.study_uid))}
    for owner in owners - {patient_pk}:
        other = identity.PatientKey(*identity.patient_key(conn, owner))
        raise IdentityConflict(
            f"study {item.study_uid} belongs to patient {other}, but this worklist item names patient {key}"
        )
    values = (
        patient_pk, item.study_uid, item.sps_id, item.digest, item.accession, item.requested_procedure_id,
        *fold_pn(item.patient_name), item.modality, item.start_date, item.start_time.replace(":", ""),
        start_at(item.start_date, item.start_time), fold_pn(item.performer)[0], item.status, stored_json(item.dataset),
    )  # fmt: skip
    row = conn.execute(INSERT, values).fetchone()
    if row is None:
        existing = conn.execute(EXISTING, (item.study_uid, item.sps_id)).fetchone()
        assert existing is not None, "a conflicting key must be readable in the same transaction"
        digest, stored, status = existing
        if digest != item.digest:
            raise WorklistConflict(
                f"a worklist item with StudyInstanceUID {item.study_uid} and ScheduledProcedureStepID "
                f"{item.sps_id} exists with other content"
            )
        return WorklistEntry(_decode(str(stored)), item.study_uid, item.sps_id, str(status), False), name_on_record
    for station in item.stations:
        conn.execute(STATION_INSERT, (row[0], station))
    return WorklistEntry(item.dataset, item.study_uid, item.sps_id, item.status), name_on_record


def remove(tx: Transaction, study_uid: str, sps_id: str) -> bool:
    tx.conn.execute(REMOVE, (study_uid, sps_id))
    return bool(tx.conn.changes())


def stored(conn: apsw.Connection, study_uid: str, sps_id: str) -> Dataset | None:
    row = conn.execute(ONE, (study_uid, sps_id)).fetchone()
    return None if row is None else _decode(row[0])


def set_status(tx: Transaction, study_uid: str, sps_id: str, dataset: Dataset, status: str) -> bool:
    values = (status, stored_json(dataset), study_uid, sps_id)
    tx.conn.execute(SET_STATUS, values)
    return bool(tx.conn.changes())


def _decode(text: str) -> Dataset:
    return Dataset.from_json(text)


# -- matching ------------------------------------------------------------------

_TOP = {
    "PatientID": lambda v: matching.text("p.patient_id", v),
    "IssuerOfPatientID": lambda v: matching.text("p.issuer", v),
    "AccessionNumber": lambda v: matching.text("w.accession", v),
    "RequestedProcedureID": lambda v: matching.text("w.requested_procedure_id", v),
    "StudyInstanceUID": lambda v: matching.uid_list("w.study_uid", v),
    "PatientName": lambda v: matching.person_name(("w.name_fold", "w.name_fold_ideo", "w.name_fold_phon"), v),
}
_STEP = {
    "Modality": lambda v: matching.text("w.modality", v),
    "ScheduledProcedureStepID": lambda v: matching.text("w.sps_id", v),
    "ScheduledProcedureStepStatus": lambda v: matching.text("w.status", v),
    "ScheduledPerformingPhysicianName": lambda v: matching.person_name(("w.performer_fold",), v),
    "ScheduledProcedureStepStartDate": lambda v: matching.date_range("w.start_date", v),
    "ScheduledProcedureStepStartTime": lambda v: matching.time_range("w.start_time", v),
}
_STATION = "EXISTS (SELECT 1 FROM worklist_station ws WHERE ws.item_pk = w.id AND {cond})"
_NOT_STARTED = "(" + ", ".join(f"'{status}'" for status in sorted(NOT_STARTED)) + ")"
_DONE = "w.status NOT IN (" + ", ".join(f"'{status}'" for status in sorted(DONE)) + ")"


def _condition(keyword: str, value: str, build: Any) -> Condition | None:
    try:
        condition: Condition | None = build(value)
    except InvalidQuery as exc:
        raise InvalidQuery(f"{keyword}: {exc}") from None
    return condition


def conditions(identifier: Dataset, include_done: bool, own_station: str, scheduled_since: str = "") -> Condition:
    """The WHERE of a worklist query. *own_station*: when the query names no
    Scheduled Station AE Title, only items for this AE title match ('' = any).
    Unless *include_done*, done items and (with *scheduled_since*, a date)
    items never started and scheduled before that date are left out."""
    parts: list[Condition] = []
    for keyword, build in _TOP.items():
        c = _condition(keyword, text_value(identifier.get(keyword)), build)
        if c is not None:
            parts.append(c)
    steps = identifier.get(SPS)
    step = Dataset()
    if isinstance(steps, Sequence) and len(steps) > 1:
        raise InvalidQuery(f"{SPS} may hold at most one item in a query, not {len(steps)}")
    if isinstance(steps, Sequence) and steps:
        step = steps[0]
    date = text_value(step.get("ScheduledProcedureStepStartDate")).strip()
    time = text_value(step.get("ScheduledProcedureStepStartTime")).strip()
    combined = "-" in date and "-" in time
    for keyword, build in _STEP.items():
        if combined and keyword.startswith("ScheduledProcedureStepStart"):
            continue
        c = _condition(keyword, text_value(step.get(keyword)), build)
        if c is not None:
            parts.append(c)
    if combined:
        c = _condition("ScheduledProcedureStepStartDate/Time", f"{date}|{time}", _combined)
        if c is not None:
            parts.append(c)
    station = text_value(step.get("ScheduledStationAETitle")).strip() or own_station
    inner = matching.text("ws.ae", station)
    if inner is not None:
        parts.append(Condition(_STATION.format(cond=inner.sql), inner.params))
    if not include_done and not text_value(step.get("ScheduledProcedureStepStatus")).strip():
        parts.append(Condition(_DONE))
        if scheduled_since:
            parts.append(Condition(f"(w.status NOT IN {_NOT_STARTED} OR w.start_date >= {_P})", [scheduled_since]))
    return matching.both(parts) if parts else Condition("1")


def _combined(value: str) -> Condition:
    """Date and time ranges combined into one range of instants (C.2.2.2.5):
    20240105-20240107 with 0800-1700 runs from 5 January 08:00 to 7 January 17:00."""
    date, time = value.split("|")
    date_low, date_high = (part.strip() for part in date.split("-", 1))
    time_low, time_high = (part.strip() for part in time.split("-", 1))
    parts = []
    if date_low:
        low = matching.date_value(date_low) + (matching.time_value(time_low, upper=False) if time_low else "")
        parts.append(Condition(f"w.start_at >= {_P}", [start_at(low[:8], low[8:])]))
    if date_high:
        high = matching.date_value(date_high) + matching.time_value(time_high or "23", upper=True)
        parts.append(Condition(f"w.start_at <= {_P}", [high]))
    return matching.both(parts) if parts else Condition("1")


def matches(reading: Reading, where: Condition) -> Iterator[Dataset]:
    """The stored items matching *where*, a page per short read."""
    sql = MATCHES.format(where=where.sql) + PAGE
    return paged(reading, lambda after, rows: (sql, (*where.params, after, rows)), lambda _, row: _decode(row[1]))
