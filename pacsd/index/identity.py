"""Identity rules: link an arriving object into the index, or refuse it.

Every function here runs inside the caller's write transaction. Each
get-or-create is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``
followed, only on conflict, by a read-back: there is no "check first"
window for a concurrent writer to fall into, and the UNIQUE constraints in
:mod:`pacsd.index.models` are what decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from peewee import Model

from pacsd.errors import IdentityConflict
from pacsd.header import Header
from pacsd.index.models import Change, Instance, Patient, Series, Study


@dataclass(frozen=True)
class PatientKey:
    patient_id: str
    issuer: str
    no_id_study_uid: str

    @classmethod
    def of(cls, header: Header) -> PatientKey:
        # Text fields arrive stripped of padding (header._text). A missing
        # issuer is '' so UNIQUE compares it; a missing ID gets a patient of
        # its own per study rather than joining every anonymous object.
        pid = header.patient_id
        return cls(pid, header.issuer, "" if pid else header.study_uid)

    def __str__(self) -> str:
        if not self.patient_id:
            return f"(no PatientID, study {self.no_id_study_uid})"
        return f"(PatientID {self.patient_id!r}, Issuer {self.issuer!r})"


class Placement(Enum):
    NEW = "new"  # the instance row was created; its file must be placed
    DUPLICATE = "duplicate"  # the SOP instance is already stored in this series


@dataclass(frozen=True)
class Linked:
    placement: Placement
    instance_id: int
    stored_path: str


def _created(model: type[Model], values: dict[str, Any], target: list[Any]) -> int | None:
    """INSERT ... ON CONFLICT(target) DO NOTHING; the new id, or None."""
    query = model.insert(values).on_conflict(action="nothing", conflict_target=target).returning(model._meta.primary_key)
    row = next(iter(query.tuples().execute()), None)
    return None if row is None else int(row[0])


def _feed(level: str, row_id: int, uid: str) -> None:
    Change.insert(action="create", level=level, row_id=row_id, uid=uid).execute()


def _patient(header: Header) -> tuple[int, PatientKey]:
    key = PatientKey.of(header)
    values = {
        "patient_id": key.patient_id,
        "issuer": key.issuer,
        "no_id_study_uid": key.no_id_study_uid,
        "name": header.patient_name,
        "birth_date": header.birth_date,
        "sex": header.sex,
    }
    new = _created(Patient, values, [Patient.patient_id, Patient.issuer, Patient.no_id_study_uid])
    if new is not None:
        _feed("patient", new, str(key))
        return new, key
    row = (
        Patient.select(Patient.id)
        .where(
            (Patient.patient_id == key.patient_id)
            & (Patient.issuer == key.issuer)
            & (Patient.no_id_study_uid == key.no_id_study_uid)
        )
        .tuples()
        .get()
    )
    return int(row[0]), key


def _patient_key(patient_id: int) -> PatientKey:
    p = Patient.get_by_id(patient_id)
    return PatientKey(p.patient_id, p.issuer, p.no_id_study_uid)


def _study(header: Header, patient_id: int, key: PatientKey) -> int:
    values = {
        "study_uid": header.study_uid,
        "patient": patient_id,
        "study_date": header.study_date,
        "study_time": header.study_time,
        "accession": header.accession,
        "description": header.study_description,
        "referring_physician": header.referring_physician,
        "study_id": header.study_id,
    }
    new = _created(Study, values, [Study.study_uid])
    if new is not None:
        _feed("study", new, header.study_uid)
        return new
    study_id, owner = Study.select(Study.id, Study.patient).where(Study.study_uid == header.study_uid).tuples().get()
    if owner != patient_id:
        raise IdentityConflict(
            f"study {header.study_uid} belongs to patient {_patient_key(owner)}, "
            f"but this object names patient {key}"
        )
    return int(study_id)


def _series(header: Header, study_id: int) -> int:
    values = {
        "series_uid": header.series_uid,
        "study": study_id,
        "modality": header.modality,
        "series_number": header.series_number,
        "description": header.series_description,
    }
    new = _created(Series, values, [Series.series_uid])
    if new is not None:
        _feed("series", new, header.series_uid)
        return new
    series_id, parent = Series.select(Series.id, Series.study).where(Series.series_uid == header.series_uid).tuples().get()
    if parent != study_id:
        other = Study.get_by_id(parent).study_uid
        raise IdentityConflict(
            f"series {header.series_uid} belongs to study {other}, but this object names study {header.study_uid}"
        )
    return int(series_id)


def link(header: Header, relative_path: str, size: int, transfer_syntax: str) -> Linked:
    """Link the object described by *header* into the index.

    Creates whatever patient/study/series/instance rows are missing and
    records them in the change feed. Raises :class:`IdentityConflict` when a
    link already stored disagrees; the caller rolls the savepoint back.
    """
    patient_id, key = _patient(header)
    study_id = _study(header, patient_id, key)
    series_id = _series(header, study_id)
    values = {
        "sop_uid": header.sop_instance_uid,
        "series": series_id,
        "sop_class_uid": header.sop_class_uid,
        "instance_number": header.instance_number,
        "transfer_syntax": transfer_syntax,
        "path": relative_path,
        "size": size,
    }
    new = _created(Instance, values, [Instance.sop_uid])
    if new is not None:
        _feed("instance", new, header.sop_instance_uid)
        return Linked(Placement.NEW, new, relative_path)
    instance_id, parent, path = (
        Instance.select(Instance.id, Instance.series, Instance.path)
        .where(Instance.sop_uid == header.sop_instance_uid)
        .tuples()
        .get()
    )
    if parent != series_id:
        other = Series.get_by_id(parent).series_uid
        raise IdentityConflict(
            f"SOP instance {header.sop_instance_uid} belongs to series {other}, "
            f"but this object names series {header.series_uid}"
        )
    return Linked(Placement.DUPLICATE, int(instance_id), str(path))
