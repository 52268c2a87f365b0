"""Query/Retrieve identifier rules (PS3.4 C.4.1.2, C.6): the level asked
for, the unique keys hierarchical queries must carry, identifier values."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pacsd.domain.errors import InvalidQuery
from pacsd.domain.query import InformationModel, Level, has_wildcard, query_level, require_unique_keys, text_value

PATIENT_ROOT = InformationModel.PATIENT_ROOT
STUDY_ROOT = InformationModel.STUDY_ROOT


def identifier(**elements: object) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


# -- query_level


@pytest.mark.parametrize(
    ("value", "model", "level"),
    [
        ("PATIENT", PATIENT_ROOT, Level.PATIENT),
        ("STUDY", PATIENT_ROOT, Level.STUDY),
        ("SERIES", STUDY_ROOT, Level.SERIES),
        ("IMAGE", STUDY_ROOT, Level.IMAGE),
        (" image ", STUDY_ROOT, Level.IMAGE),  # padding and case are not the client's fault
    ],
)
def test_query_level(value: str, model: InformationModel, level: Level) -> None:
    assert query_level(identifier(QueryRetrieveLevel=value), model) is level


@pytest.mark.parametrize("ds", [identifier(), identifier(QueryRetrieveLevel=""), identifier(QueryRetrieveLevel=None)])
def test_missing_level_is_refused(ds: Dataset) -> None:
    with pytest.raises(InvalidQuery, match=r"Query/Retrieve Level \(0008,0052\) is missing"):
        query_level(ds, STUDY_ROOT)


@pytest.mark.parametrize("value", ["INSTANCE", "FRAME", "STUDIES"])
def test_unknown_level_is_refused(value: str) -> None:
    with pytest.raises(InvalidQuery, match=f"unknown Query/Retrieve Level '{value}'"):
        query_level(identifier(QueryRetrieveLevel=value), PATIENT_ROOT)


def test_patient_level_is_not_in_the_study_root_model() -> None:
    with pytest.raises(InvalidQuery, match="level PATIENT is not part of the study root information model"):
        query_level(identifier(QueryRetrieveLevel="PATIENT"), STUDY_ROOT)


# -- require_unique_keys


def test_unique_keys_above_the_level_are_enough() -> None:
    require_unique_keys(identifier(PatientID="P1", StudyInstanceUID="1.2"), Level.SERIES, PATIENT_ROOT)
    require_unique_keys(identifier(StudyInstanceUID="1.2", SeriesInstanceUID="1.2.3"), Level.IMAGE, STUDY_ROOT)


def test_the_top_level_needs_no_key() -> None:
    require_unique_keys(identifier(), Level.PATIENT, PATIENT_ROOT)
    require_unique_keys(identifier(), Level.STUDY, STUDY_ROOT)


def test_study_root_needs_no_patient_id() -> None:
    require_unique_keys(identifier(StudyInstanceUID="1.2"), Level.SERIES, STUDY_ROOT)


@pytest.mark.parametrize(
    ("ds", "level", "model", "missing"),
    [
        (identifier(), Level.STUDY, PATIENT_ROOT, "PatientID"),
        (identifier(PatientID="  "), Level.STUDY, PATIENT_ROOT, "PatientID"),
        (identifier(PatientID="P1"), Level.SERIES, PATIENT_ROOT, "StudyInstanceUID"),
        (identifier(StudyInstanceUID="1.2"), Level.IMAGE, STUDY_ROOT, "SeriesInstanceUID"),
        (identifier(SeriesInstanceUID="1.2.3"), Level.IMAGE, STUDY_ROOT, "StudyInstanceUID"),
    ],
)
def test_a_missing_key_above_the_level_is_refused(
    ds: Dataset, level: Level, model: InformationModel, missing: str
) -> None:
    with pytest.raises(InvalidQuery, match=f"{missing} is required for a {level.name} level query in this model"):
        require_unique_keys(ds, level, model)


@pytest.mark.parametrize(
    ("ds", "level", "model", "wild"),
    [
        (identifier(PatientID="P*"), Level.STUDY, PATIENT_ROOT, "PatientID"),
        (identifier(PatientID="P?"), Level.STUDY, PATIENT_ROOT, "PatientID"),
        (identifier(StudyInstanceUID="1.2.*"), Level.SERIES, STUDY_ROOT, "StudyInstanceUID"),
        (identifier(StudyInstanceUID="1.2", SeriesInstanceUID="*"), Level.IMAGE, STUDY_ROOT, "SeriesInstanceUID"),
    ],
)
def test_a_wildcard_key_above_the_level_is_refused(
    ds: Dataset, level: Level, model: InformationModel, wild: str
) -> None:
    with pytest.raises(InvalidQuery, match=f"{wild} must be given without wildcards for a {level.name} level query"):
        require_unique_keys(ds, level, model)


def test_keys_at_or_below_the_level_may_be_wildcards_or_absent() -> None:
    require_unique_keys(identifier(StudyInstanceUID="1.2", SeriesInstanceUID="*"), Level.SERIES, STUDY_ROOT)
    require_unique_keys(identifier(PatientID="P*"), Level.PATIENT, PATIENT_ROOT)


# -- values


def test_text_value() -> None:
    assert text_value(None) == ""
    assert text_value("ABC") == "ABC"
    assert text_value(["1.2", "1.3"]) == "1.2\\1.3"
    assert text_value(MultiValue(str, ["A", "B", "C"])) == "A\\B\\C"
    assert text_value(7) == "7"


def test_text_value_of_a_multi_valued_element() -> None:
    ds = identifier(SOPInstanceUID=["1.2.3", "1.2.4"])
    assert text_value(ds.SOPInstanceUID) == "1.2.3\\1.2.4"
    assert text_value(ds.get("StudyInstanceUID")) == ""


def test_has_wildcard() -> None:
    assert has_wildcard("A*") and has_wildcard("?") and not has_wildcard("A[B]%_")
