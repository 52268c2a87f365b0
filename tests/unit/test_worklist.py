"""Worklist items through the Archive, in process on a real SQLite index:
what an item needs, what pacsd fills in, idempotent re-adds, conflicts,
the one patient shared with images, and Modality Worklist matching."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsd.domain.errors import IdentityConflict, InvalidQuery, InvalidWorklistItem, WorklistConflict, WorklistNotFound
from pacsd.services.archive import Archive
from pacsd.testing import synth
from tests.unit.conftest import store


def item(patient_id: str = "WL1", **step_keys: object) -> Dataset:
    ds = Dataset()
    ds.PatientName = "Vivaldi^Antonio"
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = "16780304"
    ds.AccessionNumber = "ACC-1"
    step = Dataset()
    step.Modality = "MR"
    step.ScheduledStationAETitle = ["AA32", "AA33"]
    step.ScheduledProcedureStepStartDate = "20261201"
    step.ScheduledProcedureStepStartTime = "083000"
    step.ScheduledPerformingPhysicianName = "Johnson^Jim"
    for keyword, value in step_keys.items():
        setattr(step, keyword, value)
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def query(**keys: object) -> Dataset:
    identifier = Dataset()
    identifier.PatientName = ""
    identifier.PatientID = ""
    step = Dataset()
    for keyword, value in keys.items():
        if keyword in ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID", "IssuerOfPatientID"):
            setattr(identifier, keyword, value)
        else:
            setattr(step, keyword, value)
    step.ScheduledProcedureStepID = step.get("ScheduledProcedureStepID", "")
    identifier.ScheduledProcedureStepSequence = [step]
    return identifier


def found(archive: Archive, **keys: object) -> list[str]:
    return sorted(str(m.PatientID) for m in archive.worklist_search(query(**keys)))


def test_generated_values_and_idempotent_re_add(archive: Archive) -> None:
    [first] = archive.worklist_create([item()])
    assert first.created and first.status == "SCHEDULED"
    ds = first.dataset
    assert ds.StudyInstanceUID.startswith("2.25.") and ds.RequestedProcedureID.startswith("RP")
    assert ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == first.sps_id
    [again] = archive.worklist_create([item()])
    assert not again.created and (again.study_uid, again.sps_id) == (first.study_uid, first.sps_id)
    assert len(archive.worklist_search(query())) == 1
    assert archive.counts()["patients"] == 1


def test_same_keys_other_content_conflict(archive: Archive) -> None:
    given = item()
    given.StudyInstanceUID = "1.2.3.4"
    given.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID = "S1"
    archive.worklist_create([given])
    given.AccessionNumber = "OTHER"
    with pytest.raises(WorklistConflict, match="exists with other content"):
        archive.worklist_create([given])


@pytest.mark.parametrize(
    ("change", "attribute"),
    [
        (lambda ds: delattr(ds, "PatientID"), "PatientID"),
        (lambda ds: delattr(ds, "ScheduledProcedureStepSequence"), "ScheduledProcedureStepSequence"),
        (
            lambda ds: delattr(ds.ScheduledProcedureStepSequence[0], "Modality"),
            "ScheduledProcedureStepSequence[0].Modality",
        ),
        (
            lambda ds: setattr(ds.ScheduledProcedureStepSequence[0], "ScheduledProcedureStepStartDate", "20261340"),
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
        ),
        (
            lambda ds: setattr(ds.ScheduledProcedureStepSequence[0], "ScheduledProcedureStepStartTime", "2561"),
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
        ),
        (lambda ds: setattr(ds, "StudyInstanceUID", "1.2.x"), "StudyInstanceUID"),
    ],
)
def test_a_bad_item_refuses_the_batch_naming_the_attribute(archive: Archive, change: object, attribute: str) -> None:
    bad = item("BAD")
    assert callable(change)
    change(bad)
    with pytest.raises(InvalidWorklistItem) as refused:
        archive.worklist_create([item("GOOD"), bad])
    assert (refused.value.index, refused.value.attribute) == (1, attribute)
    assert archive.worklist_search(query()) == [] and archive.counts()["patients"] == 0  # not even GOOD


def test_items_and_images_share_one_patient_under_concurrency(archive: Archive, tmp_path: Path) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def create(n: int) -> None:
        try:
            start.wait()
            archive.worklist_create([item("RACE", ScheduledProcedureStepID=f"S{n}")])
        except BaseException as exc:
            errors.append(exc)

    def image(n: int) -> None:
        try:
            start.wait()
            store(archive, synth.ct(patient_id="RACE", issuer="HOSP"), tmp_path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(15)]
    threads += [threading.Thread(target=image, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert archive.counts()["patients"] == 1 and len(archive.worklist_search(query())) == 15


def test_a_worklist_study_of_another_patients_images_is_refused(archive: Archive, tmp_path: Path) -> None:
    ct = synth.ct(patient_id="OWNER", issuer="HOSP")
    store(archive, ct, tmp_path)
    given = item("SOMEONE-ELSE")
    given.StudyInstanceUID = ct.StudyInstanceUID
    with pytest.raises(IdentityConflict, match="belongs to patient"):
        archive.worklist_create([given])


def test_matching_keys(archive: Archive) -> None:
    archive.worklist_create([item("A"), item("B", Modality="CT", ScheduledStationAETitle="CT1",
                                            ScheduledProcedureStepStartDate="20261202",
                                            ScheduledProcedureStepStartTime="1400")])  # fmt: skip
    assert found(archive) == ["A", "B"]
    assert found(archive, Modality="MR") == ["A"]
    assert found(archive, ScheduledStationAETitle="AA33") == ["A"]  # either of its station AE titles
    assert found(archive, ScheduledStationAETitle="CT1") == ["B"]
    assert found(archive, PatientName="vivaldi*") == ["A", "B"]
    assert found(archive, ScheduledProcedureStepStartDate="20261202") == ["B"]
    assert found(archive, ScheduledProcedureStepStartDate="-20261201") == ["A"]
    assert found(archive, ScheduledProcedureStepStartTime="0800-0900") == ["A"]
    # Combined: from 1 December 09:00 to 2 December 15:00 takes B only.
    assert found(archive, ScheduledProcedureStepStartDate="20261201-20261202",
                 ScheduledProcedureStepStartTime="0900-1500") == ["B"]  # fmt: skip
    assert found(archive, ScheduledPerformingPhysicianName="JOHNSON*") == ["A", "B"]
    with pytest.raises(InvalidQuery, match="ScheduledProcedureStepStartDate"):
        found(archive, ScheduledProcedureStepStartDate="2026-12-01")


def test_status_and_removal(archive: Archive) -> None:
    [entry] = archive.worklist_create([item()])
    archive.worklist_set_status(entry.study_uid, entry.sps_id, "COMPLETED")
    assert archive.worklist_search(query()) == []  # done items drop out of default answers
    [done] = archive.worklist_search(query(ScheduledProcedureStepStatus=""), include_done=True)
    assert done.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "COMPLETED"
    assert archive.worklist_remove(entry.study_uid, entry.sps_id)
    assert not archive.worklist_remove(entry.study_uid, entry.sps_id)
    with pytest.raises(WorklistNotFound):
        archive.worklist_set_status(entry.study_uid, entry.sps_id, "STARTED")
