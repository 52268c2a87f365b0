"""C-FIND through the Archive, in process against a real SQLite index:
which keys select, which come back, and what each level's plan returns."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsd.domain.errors import Cancelled, InvalidQuery
from pacsd.domain.query import InformationModel, SearchOptions
from pacsd.ports import no_watch
from pacsd.services.archive import Archive
from pacsd.testing import synth
from tests.unit.conftest import store

STUDY_ROOT, PATIENT_ROOT = InformationModel.STUDY_ROOT, InformationModel.PATIENT_ROOT


def find(archive: Archive, model: InformationModel = STUDY_ROOT, **keys: object) -> list[Dataset]:
    identifier = Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return list(archive.find(identifier, model, no_watch, {}))


@pytest.fixture
def stored(archive: Archive, tmp_path: Path) -> Archive:
    study, ct = synth.new_uid(), synth.new_uid()
    for _ in range(3):
        store(archive, synth.ct(patient_id="P1", patient_name="Müller^Anna", study_uid=study, series_uid=ct), tmp_path)
    store(archive, synth.ct(patient_id="P1", patient_name="Müller^Anna", study_uid=study, Modality="MR"), tmp_path)
    store(archive, synth.ct(patient_id="P2", patient_name="Smith^Bob", StudyDate="20250301"), tmp_path)
    return archive


def test_study_level_returns_the_requested_keys_with_computed_ones(stored: Archive) -> None:
    [match] = find(stored, QueryRetrieveLevel="STUDY", PatientID="P1", StudyInstanceUID="", ModalitiesInStudy="",
                   NumberOfStudyRelatedInstances="", NumberOfStudyRelatedSeries="", PatientName="")  # fmt: skip
    assert match.QueryRetrieveLevel == "STUDY" and match.RetrieveAETitle == "PACSD"
    assert sorted(match.ModalitiesInStudy) == ["CT", "MR"]
    assert (int(match.NumberOfStudyRelatedInstances), int(match.NumberOfStudyRelatedSeries)) == (4, 2)
    assert str(match.PatientName) == "Müller^Anna"
    assert match.SpecificCharacterSet == "ISO_IR 192"  # the name needs more than ASCII; declared


def test_names_match_case_insensitively_with_wildcards(stored: Archive) -> None:
    folded = find(stored, QueryRetrieveLevel="STUDY", PatientName="müller*", PatientID="")
    assert [m.PatientID for m in folded] == ["P1"]
    assert find(stored, QueryRetrieveLevel="STUDY", PatientName="smith^bob", PatientID="")[0].PatientID == "P2"


def test_date_ranges_and_modality_select(stored: Archive) -> None:
    assert [
        m.PatientID for m in find(stored, QueryRetrieveLevel="STUDY", StudyDate="20250101-20251231", PatientID="")
    ] == ["P2"]
    assert len(find(stored, QueryRetrieveLevel="STUDY", ModalitiesInStudy="MR", PatientID="")) == 1


def test_unknown_and_private_keys_come_back_empty(stored: Archive) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientID = "P2"
    identifier.add_new(0x00091001, "LO", "x")  # private, no creator
    identifier.add_new(0x00081090, "LO", "")  # ManufacturerModelName: not indexed
    [match] = list(stored.find(identifier, STUDY_ROOT, no_watch, {}))
    assert match[0x00091001].value in (None, "") and match[0x00081090].value in (None, "")


def test_patient_root_levels_need_the_keys_above(stored: Archive) -> None:
    assert {m.PatientID for m in find(stored, PATIENT_ROOT, QueryRetrieveLevel="PATIENT", PatientID="")} == {"P1", "P2"}
    with pytest.raises(InvalidQuery, match="PatientID is required for a STUDY level query"):
        find(stored, PATIENT_ROOT, QueryRetrieveLevel="STUDY", StudyInstanceUID="")
    with pytest.raises(InvalidQuery, match="not part of the study root"):
        find(stored, STUDY_ROOT, QueryRetrieveLevel="PATIENT", PatientID="")


def test_a_cancel_stops_between_matches(stored: Archive) -> None:
    seen = []

    def cancel_after_first() -> None:
        if seen:
            raise Cancelled

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientID = ""  # both studies match
    with pytest.raises(Cancelled):
        for match in stored.find(identifier, STUDY_ROOT, cancel_after_first, {}):
            seen.append(match)
    assert len(seen) == 1


def test_an_expected_count_only_sizes_the_pages_and_every_match_still_comes(archive: Archive, tmp_path: Path) -> None:
    study = synth.new_uid()
    stored = {store(archive, synth.ct(patient_id="PAGED", study_uid=study), tmp_path).header.sop_instance_uid
              for _ in range(7)}  # fmt: skip
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = study
    identifier.SOPInstanceUID = ""
    for expected in (0, 1, 2, 7, 50):
        found = archive.find(identifier, STUDY_ROOT, no_watch, {}, SearchOptions(relational=True, expected=expected))
        assert {m.SOPInstanceUID for m in found} == stored, expected
