"""The schema itself refuses duplicates: no Python check stands in front."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from pacsd.index.db import open_index
from pacsd.index.migrations import LATEST, MIGRATIONS, migrate


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    db = open_index(tmp_path / "index.sqlite")
    with db.reading() as connection:
        yield connection
    db.close()


def patient(conn: apsw.Connection, patient_id: str | None, issuer: str | None = "", no_id: str = "") -> int:
    row = conn.execute(
        "INSERT INTO patient (patient_id, issuer, no_id_study_uid, name, name_fold, name_fold_ideo, name_fold_phon,"
        " birth_date, sex) VALUES (?, ?, ?, '', '', '', '', '', '') RETURNING id",
        (patient_id, issuer, no_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def study(conn: apsw.Connection, uid: str, patient_pk: int | None) -> int:
    row = conn.execute(
        "INSERT INTO study (study_uid, patient_pk, study_date, study_time, accession, description,"
        " referring_physician, referring_fold, study_id) VALUES (?, ?, '', '', '', '', '', '', '') RETURNING id",
        (uid, patient_pk),
    ).fetchone()
    assert row is not None
    return int(row[0])


def series(conn: apsw.Connection, uid: str, study_pk: int) -> None:
    conn.execute(
        "INSERT INTO series (series_uid, study_pk, modality, description, series_date, series_time, body_part)"
        " VALUES (?, ?, '', '', '', '', '')",
        (uid, study_pk),
    )


def test_patient_id_and_issuer_are_unique(conn: apsw.Connection) -> None:
    patient(conn, "P")
    with pytest.raises(apsw.ConstraintError):
        patient(conn, "P")
    patient(conn, "P", "OTHER")


def test_issuer_is_never_null(conn: apsw.Connection) -> None:
    with pytest.raises(apsw.ConstraintError):
        patient(conn, "P", None)


def test_no_id_key_only_for_patients_without_id(conn: apsw.Connection) -> None:
    with pytest.raises(apsw.ConstraintError):
        patient(conn, "P", "", "1.2.3")
    with pytest.raises(apsw.ConstraintError):
        patient(conn, "", "", "")


def test_study_names_one_patient_and_series_one_study(conn: apsw.Connection) -> None:
    a = patient(conn, "A")
    b = patient(conn, "B")
    first = study(conn, "1.2.3", a)
    with pytest.raises(apsw.ConstraintError):
        study(conn, "1.2.3", b)
    with pytest.raises(apsw.ConstraintError):
        study(conn, "1.2.4", None)
    series(conn, "1.2.3.1", first)
    with pytest.raises(apsw.ConstraintError):
        series(conn, "1.2.3.1", study(conn, "1.2.5", b))


def test_foreign_keys_are_enforced(conn: apsw.Connection) -> None:
    with pytest.raises(apsw.ConstraintError):
        study(conn, "9.9", 12345)


@pytest.mark.parametrize("version", [1, 2])
def test_older_schemas_are_upgraded_in_place(tmp_path: Path, version: int) -> None:
    """An index written by an older schema (1: before fetch records, 2:
    before write-ahead copies) opens, gains the later tables, and keeps its
    rows."""
    later = {2: ["fetch"], 3: ["write_ahead"]}
    path = tmp_path / "index.sqlite"
    old = apsw.Connection(str(path))
    assert migrate(old, MIGRATIONS[:version]) == version
    patient(old, "OLD")
    tables = {name for (name,) in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not {t for step in range(version + 1, 4) for t in later[step]} & tables
    old.close()
    db = open_index(path)
    try:
        with db.reading() as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (LATEST,)
            for step in range(version + 1, 4):
                for table in later[step]:
                    assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,)
            assert conn.execute("SELECT patient_id FROM patient").fetchall() == [("OLD",)]
    finally:
        db.close()
