"""Worklist items (Modality Worklist, PS3.4 K.6): what an item must carry
for a modality to use it, what pacsd fills in when it is missing, and the
values the index keeps to match and to key it.

An item is one Scheduled Procedure Step: a request with several items in
its Scheduled Procedure Step Sequence becomes that many items. Its patient
is keyed exactly as a stored image's is (PatientID + Issuer, normalised as
:func:`pacsd.domain.header.normalised` does), so worklist and images share
one patient row. Missing Study Instance UID, Requested Procedure ID and
Scheduled Procedure Step ID are derived from the item's content, so adding
the same item twice (a RIS retrying) names the same item and adds nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from pacsd.domain import uid
from pacsd.domain.errors import InvalidWorklistItem
from pacsd.domain.header import normalised

SPS = "ScheduledProcedureStepSequence"
# Scheduled Procedure Step Status (0040,0020), PS3.3 C.4.10.
STATUSES = ("SCHEDULED", "ARRIVED", "READY", "STARTED", "DEPARTED", "CANCELED", "DISCONTINUED", "COMPLETED")
# Items in these states are not answered to modalities unless asked for.
DONE = frozenset({"COMPLETED", "DISCONTINUED", "CANCELED"})
# Items in these states expire (are not answered) once scheduled too long ago.
NOT_STARTED = frozenset({"SCHEDULED", "ARRIVED", "READY"})

_AE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}\Z")  # printable ASCII but backslash
_TIME = re.compile(r"(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?\Z")


@dataclass(frozen=True)
class WorklistItem:
    """One Scheduled Procedure Step, ready for the index."""

    dataset: Dataset  # as the modality is answered: with what pacsd filled in, one SPS item
    digest: str  # of the item as given: identical re-adds have the same one
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    sps_id: str
    accession: str
    requested_procedure_id: str
    modality: str
    stations: tuple[str, ...]
    start_date: str
    start_time: str  # HHMMSS.FFFFFF as given, '' if none
    performer: str
    status: str


@dataclass(frozen=True)
class WorklistEntry:
    """A stored item, as the Archive answers it."""

    dataset: Dataset
    study_uid: str
    sps_id: str
    status: str
    created: bool = True  # False: an identical item was there already


def text(ds: Dataset, keyword: str) -> str:
    """A text value of *ds* as the index keeps it ('' if absent or empty);
    several values joined by a backslash."""
    elem = ds.data_element(keyword) if keyword in ds else None
    if elem is None or elem.value is None:
        return ""
    if isinstance(elem.value, (list, MultiValue)):
        return "\\".join(normalised(str(v), elem.VR) for v in elem.value)
    return normalised(str(elem.value), elem.VR)


def valid_date(value: str) -> bool:
    try:
        datetime.datetime.strptime(value, "%Y%m%d")
    except ValueError:
        return False
    return len(value) == 8


def valid_time(value: str) -> bool:
    match = _TIME.match(value)
    if match is None:
        return False
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups()[:3])
    return hours < 24 and minutes < 60 and seconds < 61  # 60: a leap second


def stored_json(ds: Dataset) -> str:
    """*ds* as the index keeps worklist items and MPPS: DICOM JSON with its
    keys sorted, so equal content is equal text (and digest)."""
    return json.dumps(ds.to_json_dict(), sort_keys=True)


def _digest(ds: Dataset) -> str:
    return hashlib.sha256(stored_json(ds).encode()).hexdigest()


def _derived_uid(digest: str) -> str:
    """A UUID-form UID (PS3.5 B.2) from the content's digest."""
    return f"2.25.{int(digest[:32], 16)}"


def prepare(given: Dataset, index: int = 0) -> list[WorklistItem]:
    """The items one request (*given*, at *index* in its batch) makes: one
    per Scheduled Procedure Step, validated and completed. Raises
    InvalidWorklistItem naming the first thing a modality could not use."""

    def refuse(attribute: str, message: str) -> InvalidWorklistItem:
        return InvalidWorklistItem(index, attribute, message)

    patient_id = text(given, "PatientID")
    if not patient_id:
        raise refuse("PatientID", "PatientID is required: pacsd keys a worklist item's patient by PatientID and Issuer")
    for keyword in ("PatientBirthDate",):
        value = text(given, keyword)
        if value and not valid_date(value):
            raise refuse(keyword, f"{keyword} is not a DICOM date (YYYYMMDD): {value!r}")
    study_uid = text(given, "StudyInstanceUID")
    if study_uid and not uid.is_valid(study_uid):
        raise refuse("StudyInstanceUID", f"StudyInstanceUID is not a valid UID: {study_uid!r}")
    steps = given.get(SPS)
    if not isinstance(steps, Sequence) or len(steps) == 0:
        raise refuse(SPS, f"{SPS} with at least one item is required (Modality, start date)")
    items = []
    for n, step in enumerate(steps):
        _check_step(step, f"{SPS}[{n}]", refuse)
        one = given.copy()
        one[SPS].value = Sequence([step.copy()])
        if "SpecificCharacterSet" in one:
            del one.SpecificCharacterSet  # values are Unicode here; each answer declares its own
        items.append(_completed(one, index))
    return items


def _check_step(step: Dataset, where: str, refuse: Callable[[str, str], InvalidWorklistItem]) -> None:
    modality = text(step, "Modality")
    if not modality:
        raise refuse(f"{where}.Modality", f"{where}.Modality is required: modalities select their items by it")
    start = text(step, "ScheduledProcedureStepStartDate")
    if not start:
        raise refuse(f"{where}.ScheduledProcedureStepStartDate", f"{where}.ScheduledProcedureStepStartDate is required")
    if not valid_date(start):
        raise refuse(
            f"{where}.ScheduledProcedureStepStartDate",
            f"{where}.ScheduledProcedureStepStartDate is not a DICOM date (YYYYMMDD): {start!r}",
        )
    time = text(step, "ScheduledProcedureStepStartTime")
    if time and not valid_time(time):
        raise refuse(
            f"{where}.ScheduledProcedureStepStartTime",
            f"{where}.ScheduledProcedureStepStartTime is not a DICOM time (HHMMSS.FFFFFF): {time!r}",
        )
    for station in filter(None, text(step, "ScheduledStationAETitle").split("\\")):
        if not _AE.match(station):
            raise refuse(
                f"{where}.ScheduledStationAETitle", f"{where}.ScheduledStationAETitle {station!r} is not an AE title"
            )
    status = text(step, "ScheduledProcedureStepStatus")
    if status and status not in STATUSES:
        raise refuse(
            f"{where}.ScheduledProcedureStepStatus",
            f"{where}.ScheduledProcedureStepStatus {status!r} is not one of {', '.join(STATUSES)}",
        )


def _completed(item: Dataset, index: int) -> WorklistItem:
    """*item* (one SPS) with what it lacks filled in from its digest."""
    digest = _digest(item)
    step = item[SPS].value[0]
    if not text(item, "StudyInstanceUID"):
        item.StudyInstanceUID = _derived_uid(digest)
    if not text(item, "RequestedProcedureID"):
        item.RequestedProcedureID = "RP" + digest[:14].upper()
    if not text(step, "ScheduledProcedureStepID"):
        step.ScheduledProcedureStepID = "SPS" + digest[:13].upper()
    if not text(step, "ScheduledProcedureStepStatus"):
        step.ScheduledProcedureStepStatus = "SCHEDULED"
    return WorklistItem(
        dataset=item,
        digest=digest,
        patient_id=text(item, "PatientID"),
        issuer=text(item, "IssuerOfPatientID"),
        patient_name=text(item, "PatientName"),
        birth_date=text(item, "PatientBirthDate"),
        sex=text(item, "PatientSex"),
        study_uid=text(item, "StudyInstanceUID"),
        sps_id=text(step, "ScheduledProcedureStepID"),
        accession=text(item, "AccessionNumber"),
        requested_procedure_id=text(item, "RequestedProcedureID"),
        modality=text(step, "Modality"),
        stations=tuple(filter(None, text(step, "ScheduledStationAETitle").split("\\"))),
        start_date=text(step, "ScheduledProcedureStepStartDate"),
        start_time=text(step, "ScheduledProcedureStepStartTime"),
        performer=text(step, "ScheduledPerformingPhysicianName"),
        status=text(step, "ScheduledProcedureStepStatus"),
    )


def with_status(dataset: Dataset, status: str) -> Dataset:
    """*dataset* (a stored item) with its step's status changed."""
    if status not in STATUSES:
        raise InvalidWorklistItem(0, "ScheduledProcedureStepStatus", f"{status!r} is not one of {', '.join(STATUSES)}")
    changed = dataset.copy()
    step = changed[SPS].value[0].copy()
    step.ScheduledProcedureStepStatus = status
    changed[SPS].value = Sequence([step])
    return changed
