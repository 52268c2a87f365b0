"""The catalog of queryable attributes: level, matching kind and SQL.

Table aliases used in the expressions: ``p`` patient, ``s`` study, ``se``
series, ``i`` instance (see :data:`pacsd.index.search.FROM`). Column
expressions come only from here, never from a request; what differs
between SQL dialects comes from :mod:`pacsd.index.dialect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pacsd.domain.query import Level
from pacsd.index.dialect import SQLITE


class Kind(Enum):
    UID = "uid"
    TEXT = "text"
    PN = "pn"
    DATE = "date"
    TIME = "time"
    INT = "int"
    COUNT = "count"  # computed; returned, not matched
    MULTI = "multi"  # computed list (ModalitiesInStudy); matched via `match_sql`
    SEQUENCE = "sequence"


@dataclass(frozen=True)
class Attribute:
    keyword: str
    level: Level
    kind: Kind
    sql: str  # the value returned
    match_columns: tuple[str, ...] = ()  # where matching looks, if not `sql`
    # For MULTI: a condition on one value, with {cond} filled by matching.
    match_sql: str = ""


P, ST, SE, IM = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE

_INSTANCES_OF_STUDY = "SELECT {x} FROM series sx JOIN instance ix ON ix.series_pk = sx.id WHERE sx.study_pk = s.id"

ATTRIBUTES: dict[str, Attribute] = {
    a.keyword: a
    for a in (
        Attribute("PatientName", P, Kind.PN, "p.name", ("p.name_fold", "p.name_fold_ideo", "p.name_fold_phon")),
        Attribute("PatientID", P, Kind.TEXT, "p.patient_id"),
        Attribute("IssuerOfPatientID", P, Kind.TEXT, "p.issuer"),
        Attribute("PatientBirthDate", P, Kind.DATE, "p.birth_date"),
        Attribute("PatientSex", P, Kind.TEXT, "p.sex"),
        Attribute(
            "NumberOfPatientRelatedStudies", P, Kind.COUNT,
            "(SELECT COUNT(*) FROM study sx WHERE sx.patient_pk = p.id)",
        ),
        Attribute(
            "NumberOfPatientRelatedSeries", P, Kind.COUNT,
            "(SELECT COUNT(*) FROM study sx JOIN series sex ON sex.study_pk = sx.id WHERE sx.patient_pk = p.id)",
        ),
        Attribute(
            "NumberOfPatientRelatedInstances", P, Kind.COUNT,
            "(SELECT COUNT(*) FROM study sx JOIN series sex ON sex.study_pk = sx.id"
            " JOIN instance ix ON ix.series_pk = sex.id WHERE sx.patient_pk = p.id)",
        ),
        Attribute("StudyInstanceUID", ST, Kind.UID, "s.study_uid"),
        Attribute("StudyDate", ST, Kind.DATE, "s.study_date"),
        Attribute("StudyTime", ST, Kind.TIME, "s.study_time"),
        Attribute("AccessionNumber", ST, Kind.TEXT, "s.accession"),
        Attribute("StudyDescription", ST, Kind.TEXT, "s.description"),
        Attribute("ReferringPhysicianName", ST, Kind.PN, "s.referring_physician", ("s.referring_fold",)),
        Attribute("StudyID", ST, Kind.TEXT, "s.study_id"),
        Attribute(
            "ModalitiesInStudy", ST, Kind.MULTI,
            f"(SELECT {SQLITE.distinct_list('sx.modality')} FROM series sx WHERE sx.study_pk = s.id)",
            ("sx.modality",),
            "EXISTS (SELECT 1 FROM series sx WHERE sx.study_pk = s.id AND {cond})",
        ),
        Attribute(
            "SOPClassesInStudy", ST, Kind.MULTI,
            "(" + _INSTANCES_OF_STUDY.format(x=SQLITE.distinct_list("ix.sop_class_uid")) + ")",
            ("ix.sop_class_uid",),
            "EXISTS (" + _INSTANCES_OF_STUDY.format(x="1") + " AND {cond})",
        ),
        Attribute(
            "NumberOfStudyRelatedSeries", ST, Kind.COUNT,
            "(SELECT COUNT(*) FROM series sx WHERE sx.study_pk = s.id)",
        ),
        Attribute(
            "NumberOfStudyRelatedInstances", ST, Kind.COUNT,
            "(" + _INSTANCES_OF_STUDY.format(x="COUNT(*)") + ")",
        ),
        Attribute("SeriesInstanceUID", SE, Kind.UID, "se.series_uid"),
        Attribute("Modality", SE, Kind.TEXT, "se.modality"),
        Attribute("SeriesNumber", SE, Kind.INT, "se.series_number"),
        Attribute("SeriesDescription", SE, Kind.TEXT, "se.description"),
        Attribute("SeriesDate", SE, Kind.DATE, "se.series_date"),
        Attribute("SeriesTime", SE, Kind.TIME, "se.series_time"),
        Attribute("BodyPartExamined", SE, Kind.TEXT, "se.body_part"),
        Attribute(
            "NumberOfSeriesRelatedInstances", SE, Kind.COUNT,
            "(SELECT COUNT(*) FROM instance ix WHERE ix.series_pk = se.id)",
        ),
        Attribute("RequestAttributesSequence", SE, Kind.SEQUENCE, ""),
        Attribute("SOPInstanceUID", IM, Kind.UID, "i.sop_uid"),
        Attribute("SOPClassUID", IM, Kind.UID, "i.sop_class_uid"),
        Attribute("InstanceNumber", IM, Kind.INT, "i.instance_number"),
    )
}  # fmt: skip

# Items of the Request Attributes Sequence we index (table series_request).
REQUEST_ITEM_COLUMNS = {
    "RequestedProcedureID": "rq.requested_procedure_id",
    "ScheduledProcedureStepID": "rq.scheduled_procedure_step_id",
    "AccessionNumber": "rq.accession",
}
