"""The schema itself refuses duplicates: no Python check stands in front."""

from __future__ import annotations

from pathlib import Path

import pytest
from peewee import IntegrityError

from pacsd.index.db import open_index
from pacsd.index.models import Patient, Series, Study


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = open_index(tmp_path / "index.sqlite")
    yield database
    database.close()


def test_patient_id_and_issuer_are_unique(db) -> None:  # type: ignore[no-untyped-def]
    Patient.create(patient_id="P", issuer="")
    with pytest.raises(IntegrityError):
        Patient.create(patient_id="P", issuer="")
    Patient.create(patient_id="P", issuer="OTHER")


def test_issuer_is_never_null(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError):
        Patient.insert(patient_id="P", issuer=None).execute()


def test_no_id_key_only_for_patients_without_id(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError):
        Patient.create(patient_id="P", issuer="", no_id_study_uid="1.2.3")
    with pytest.raises(IntegrityError):
        Patient.create(patient_id="", issuer="", no_id_study_uid="")


def test_study_names_one_patient_and_series_one_study(db) -> None:  # type: ignore[no-untyped-def]
    a = Patient.create(patient_id="A")
    b = Patient.create(patient_id="B")
    study = Study.create(study_uid="1.2.3", patient=a)
    with pytest.raises(IntegrityError):
        Study.create(study_uid="1.2.3", patient=b)
    with pytest.raises(IntegrityError):
        Study.insert(study_uid="1.2.4", patient=None).execute()
    Series.create(series_uid="1.2.3.1", study=study)
    with pytest.raises(IntegrityError):
        Series.create(series_uid="1.2.3.1", study=Study.create(study_uid="1.2.5", patient=b))


def test_foreign_keys_are_enforced(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError):
        Study.create(study_uid="9.9", patient=12345)


@pytest.mark.parametrize("version", [1, 2])
def test_older_schemas_are_upgraded_in_place(tmp_path: Path, version: int) -> None:
    """An index written by an older schema (1: before fetch records, 2:
    before write-ahead copies) opens, gains the later tables, and keeps its
    rows."""
    from pacsd.index.db import SCHEMA_VERSION, UPGRADES

    later = [model for step in range(version, SCHEMA_VERSION) for model in UPGRADES[step]]
    path = tmp_path / "index.sqlite"
    database = open_index(path)
    Patient.create(patient_id="OLD")
    database.drop_tables(later)
    database.execute_sql(f"PRAGMA user_version = {version}")
    database.close()
    database = open_index(path)
    try:
        assert database.execute_sql("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert all(model.select().count() == 0 for model in later)
        assert Patient.get(Patient.patient_id == "OLD")
    finally:
        database.close()
