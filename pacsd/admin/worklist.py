"""`pacsd worklist`: items from files (Part 10 worklist files as DCMTK's
dump2dcm writes them, the format Orthanc and wlmscpfs read; or DICOM JSON,
PS3.18 F), listed, removed, their status set — all through the Archive."""

from __future__ import annotations

import json
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from pacsd.domain.errors import InvalidWorklistItem, Refusal
from pacsd.domain.query import text_value
from pacsd.domain.worklist import SPS
from pacsd.services.archive import Archive

# `pacsd worklist list` filters: option name -> (keyword, inside the step?)
FILTERS = {
    "patient_id": ("PatientID", False),
    "patient_name": ("PatientName", False),
    "accession": ("AccessionNumber", False),
    "modality": ("Modality", True),
    "station": ("ScheduledStationAETitle", True),
    "date": ("ScheduledProcedureStepStartDate", True),
    "status": ("ScheduledProcedureStepStatus", True),
}
COLUMNS = (
    ("PatientID", False), ("PatientName", False), ("AccessionNumber", False), ("StudyInstanceUID", False),
    ("ScheduledProcedureStepID", True), ("Modality", True), ("ScheduledStationAETitle", True),
    ("ScheduledProcedureStepStartDate", True), ("ScheduledProcedureStepStartTime", True),
    ("ScheduledProcedureStepStatus", True),
)  # fmt: skip


def read_items(path: Path) -> list[Dataset]:
    """The items in one file: a DICOM JSON object or array, or a Part 10
    file. ValueError says why a file cannot be read as either."""
    data = path.read_bytes()
    if data.lstrip()[:1] in (b"{", b"["):
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        objects = parsed if isinstance(parsed, list) else [parsed]
        if not all(isinstance(o, dict) for o in objects):
            raise ValueError("DICOM JSON must be an object or an array of objects")
        try:
            return [Dataset.from_json(o) for o in objects]
        except Exception as exc:
            raise ValueError(f"not DICOM JSON: {exc}") from None
    try:
        ds = dcmread(path, force=True)
        ds.PatientID  # noqa: B018 - reads the dataset, so a garbage file fails here
    except AttributeError:
        raise ValueError("no PatientID: not a worklist file") from None
    except Exception as exc:
        raise ValueError(f"not a DICOM file: {exc}") from None
    ds.file_meta = None  # type: ignore[assignment]
    return [ds]


def add(archive: Archive, paths: list[Path]) -> tuple[int, int, list[tuple[Path, str]]]:
    """Add each file's items (a file is all or nothing); (created, already
    there, [(file, why refused)])."""
    created = existing = 0
    refused: list[tuple[Path, str]] = []
    for path in paths:
        try:
            entries = archive.worklist_create(read_items(path))
        except InvalidWorklistItem as exc:
            refused.append((path, f"{exc.attribute}: {exc}"))
            continue
        except (Refusal, ValueError, OSError) as exc:
            refused.append((path, str(exc)))
            continue
        created += sum(entry.created for entry in entries)
        existing += sum(not entry.created for entry in entries)
    return created, existing, refused


def query(filters: dict[str, str]) -> Dataset:
    """A worklist identifier asking for the listed columns, with *filters*."""
    identifier, step = Dataset(), Dataset()
    for keyword, in_step in COLUMNS:
        setattr(step if in_step else identifier, keyword, "")
    for option, value in filters.items():
        keyword, in_step = FILTERS[option]
        setattr(step if in_step else identifier, keyword, value)
    identifier.ScheduledStationName = ""
    setattr(identifier, SPS, [step])
    return identifier


def row(item: Dataset) -> dict[str, str]:
    step = item[SPS].value[0] if SPS in item and item[SPS].value else Dataset()
    return {keyword: text_value((step if in_step else item).get(keyword)) for keyword, in_step in COLUMNS}
