"""Identity rules through the Archive, in process against a real SQLite
index and real files in tmp_path: who a patient is, what conflicts, and
that a refused object leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsd.domain.errors import IdentityConflict
from pacsd.domain.outcomes import Result
from pacsd.services.archive import Archive
from pacsd.testing import synth
from tests.unit.conftest import store as store_object


def store(archive: Archive, ds: Dataset, tmp_path: Path) -> Result:
    return store_object(archive, ds, tmp_path).result


def test_patient_id_and_issuer_name_one_patient(archive: Archive, tmp_path: Path) -> None:
    for _ in range(3):
        store(archive, synth.ct(patient_id="P1", issuer="HOSP"), tmp_path)
    store(archive, synth.ct(patient_id="P1", issuer="OTHER"), tmp_path)  # another issuer: another patient
    store(archive, synth.ct(patient_id="P1"), tmp_path)  # no issuer: another key still
    counts = archive.counts()
    assert (counts["patients"], counts["studies"], counts["instances"]) == (3, 5, 5)


def test_objects_without_patient_id_get_a_patient_per_study(archive: Archive, tmp_path: Path) -> None:
    study = synth.new_uid()
    store(archive, synth.ct(patient_id=None, study_uid=study), tmp_path)
    store(archive, synth.ct(patient_id=None, study_uid=study), tmp_path)
    store(archive, synth.ct(patient_id=None), tmp_path)
    assert archive.counts()["patients"] == 2  # never one patient for every anonymous object


def test_a_study_under_another_patient_is_refused_naming_both(archive: Archive, tmp_path: Path) -> None:
    first = synth.ct(patient_id="A", issuer="H")
    store(archive, first, tmp_path)
    before = archive.counts()
    other = synth.ct(patient_id="B", issuer="H", study_uid=first.StudyInstanceUID)
    with pytest.raises(IdentityConflict) as refused:
        store(archive, other, tmp_path)
    assert str(refused.value) == (
        f"study {first.StudyInstanceUID} belongs to patient (PatientID 'A', Issuer 'H'), "
        "but this object names patient (PatientID 'B', Issuer 'H')"
    )
    assert archive.counts() == before  # not even patient B was created
    assert not list(archive.storage.files.rglob(f"{other.SOPInstanceUID}.dcm"))


def test_a_series_in_another_study_and_an_instance_in_another_series_are_refused(
    archive: Archive, tmp_path: Path
) -> None:
    first = synth.ct(patient_id="S")
    store(archive, first, tmp_path)
    moved_series = synth.ct(patient_id="S", series_uid=first.SeriesInstanceUID)
    with pytest.raises(IdentityConflict, match=f"series {first.SeriesInstanceUID} belongs to study"):
        store(archive, moved_series, tmp_path)
    moved_instance = synth.ct(patient_id="S", study_uid=first.StudyInstanceUID, sop_uid=first.SOPInstanceUID)
    with pytest.raises(IdentityConflict, match=f"SOP instance {first.SOPInstanceUID} belongs to series"):
        store(archive, moved_instance, tmp_path)
    assert archive.counts()["instances"] == 1


def test_duplicates_identical_and_different(archive: Archive, tmp_path: Path) -> None:
    ds = synth.ct(patient_id="D")
    assert store(archive, ds, tmp_path) is Result.STORED
    assert store(archive, ds, tmp_path) is Result.ALREADY_STORED
    ds.StudyDescription = "changed"
    assert store(archive, ds, tmp_path) is Result.DUPLICATE_KEPT
    assert archive.counts()["instances"] == 1
