"""Modality Performed Procedure Step (PS3.4 F.7): what a modality reports
it did, and the rules an MPPS instance follows as it is created and set.

An MPPS is created IN PROGRESS and set, any number of times, until it is
COMPLETED or DISCONTINUED; after that it may no longer be updated. Some
attributes are fixed at creation (Table F.7.2-1 "N-SET: not allowed").
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacsd.domain.errors import MppsFinal, MppsInvalidValue, MppsNotSettable
from pacsd.domain.worklist import text

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
STATUSES = (IN_PROGRESS, COMPLETED, DISCONTINUED)
STEP_STATUS = {IN_PROGRESS: "STARTED", COMPLETED: "COMPLETED", DISCONTINUED: "DISCONTINUED"}

# Set at N-CREATE only (PS3.4 Table F.7.2-1).
NOT_SETTABLE = frozenset(
    {
        "ScheduledStepAttributesSequence", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
        "PatientSex", "ReferencedPatientSequence", "PerformedProcedureStepID", "PerformedStationAETitle",
        "PerformedStationName", "PerformedLocation", "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime", "Modality", "StudyID",
    }
)  # fmt: skip


@dataclass(frozen=True)
class StepReference:
    """A worklist item an MPPS says it performs."""

    study_uid: str
    sps_id: str


def status_of(ds: Dataset) -> str:
    return text(ds, "PerformedProcedureStepStatus")


def check_create(ds: Dataset) -> None:
    status = status_of(ds)
    if status != IN_PROGRESS:
        raise MppsInvalidValue(
            "PerformedProcedureStepStatus",
            f"PerformedProcedureStepStatus must be IN PROGRESS at N-CREATE, not {status or 'empty'!r}",
        )


def check_set(current: Dataset, modification: Dataset) -> None:
    if status_of(current) != IN_PROGRESS:
        raise MppsFinal("Performed Procedure Step Object may no longer be updated")
    for elem in modification:
        if elem.keyword in NOT_SETTABLE:
            raise MppsNotSettable(elem.keyword, f"{elem.keyword} may not be changed by N-SET")
    status = status_of(modification)
    if "PerformedProcedureStepStatus" in modification and status not in STATUSES:
        raise MppsInvalidValue(
            "PerformedProcedureStepStatus",
            f"PerformedProcedureStepStatus {status!r} is not one of {', '.join(STATUSES)}",
        )


def apply_set(current: Dataset, modification: Dataset) -> Dataset:
    """*current* with the N-SET *modification* applied: each attribute given
    replaces the stored one (an empty value empties it)."""
    updated = current.copy()
    for elem in modification:
        updated[elem.tag] = elem
    return updated


def steps(ds: Dataset) -> list[StepReference]:
    """The worklist items an MPPS references (Scheduled Step Attributes Sequence)."""
    found = []
    for item in ds.get("ScheduledStepAttributesSequence") or Sequence():
        study_uid, sps_id = text(item, "StudyInstanceUID"), text(item, "ScheduledProcedureStepID")
        if study_uid and sps_id:
            found.append(StepReference(study_uid, sps_id))
    return found


def series(ds: Dataset) -> list[str]:
    """The Series Instance UIDs an MPPS lists as performed."""
    return [uid for item in ds.get("PerformedSeriesSequence") or Sequence() if (uid := text(item, "SeriesInstanceUID"))]
