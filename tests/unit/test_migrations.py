"""Numbered migrations: an empty file reaches the latest version, a real
schema-3 index made by the release before them upgrades in place with its
change feed backfilled, and a newer index is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import apsw
import pytest
from peewee import SqliteDatabase

from pacsd.domain.errors import StartupError
from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import Change
from pacsd.domain.received import received_from_file
from pacsd.index.db import open_index
from pacsd.index.migrations import LATEST, SchemaError
from pacsd.index.models import MODELS
from pacsd.index.sqlite import SqliteIndex
from pacsd.services.ingest import Ingest
from pacsd.storage.files import Storage
from pacsd.testing import synth
from tests.unit.conftest import Flushed

SCHEMA3 = Path(__file__).parent / "data" / "schema3.sqlite"  # made by data/make_schema3.py


def columns(conn: apsw.Connection) -> dict[str, set[str]]:
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        table: {str(row[1]) for row in conn.execute(f'PRAGMA table_info("{table}")')}
        for table in tables
        if table != "sqlite_sequence"
    }


def test_an_empty_file_gets_the_latest_schema_which_the_models_describe(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    open_index(path).close()
    conn = apsw.Connection(str(path))
    assert conn.execute("PRAGMA user_version").fetchone() == (LATEST,)
    described = {model._meta.table_name: {f.column_name for f in model._meta.sorted_fields} for model in MODELS}
    assert columns(conn) == described


def test_a_newer_index_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    apsw.Connection(str(path)).execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaError, match=f"version 99 is newer than this pacsd \\({LATEST}\\)"):
        open_index(path)
    with pytest.raises(SchemaError, match=f"version 99, this pacsd reads {LATEST}"):
        open_index(path, readonly=True)


def test_another_programs_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    apsw.Connection(str(path)).execute("CREATE TABLE other (x)")
    with pytest.raises(StartupError, match="not a pacsd index"):
        open_index(path)
    conn = apsw.Connection(str(path))
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("other",)]


@pytest.fixture
def schema3(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(SCHEMA3, data / "index.sqlite")
    return data


def test_the_fixture_is_a_schema_3_index(schema3: Path) -> None:
    conn = apsw.Connection(str(schema3 / "index.sqlite"), flags=apsw.SQLITE_OPEN_READONLY)
    assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    assert "patient_id" not in columns(conn)["change"]


def test_a_schema_3_index_upgrades_in_place(schema3: Path) -> None:
    path = schema3 / "index.sqlite"
    before = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    kept = {
        table: before.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        for table in ("patient", "study", "series", "instance", "write_ahead", "fetch")
    }
    feed = before.execute("SELECT seq, at, action, level, row_id, uid FROM change ORDER BY seq").fetchall()
    before.close()

    index = SqliteIndex(path)
    index.start()
    try:
        after = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        assert after.execute("PRAGMA user_version").fetchone() == (LATEST,)
        added = {"fetch": 1}  # columns appended since: migration 7's fetch.stale
        for table, rows in kept.items():
            now = after.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            assert [row[: len(row) - added.get(table, 0)] for row in now] == rows, table
        # The old columns stay as they were.
        assert after.execute("SELECT seq, at, action, level, row_id, uid FROM change ORDER BY seq").fetchall() == feed
        after.close()
        assert index.counts() == {
            "patients": 3, "studies": 4, "series": 4, "instances": 5, "bytes": sum(row[7] for row in kept["instance"]),
            "fetches_done": 0, "fetches_failed": 1,
        }  # fmt: skip
        changes = index.changes_since(0, 100)
        at = {c.seq: c.at for c in changes}
        assert all(a.endswith("Z") and "T" in a for a in at.values())
        iss = ("P-ISS", "HOSP A")
        expected = [
            (1, "patient", *iss, "", "", ""),
            (2, "study", *iss, "2.25.100", "", ""),
            (3, "series", *iss, "2.25.100", "2.25.110", ""),
            (4, "instance", *iss, "2.25.100", "2.25.110", "2.25.111"),
            (5, "instance", *iss, "2.25.100", "2.25.110", "2.25.112"),
            (6, "study", *iss, "2.25.200", "", ""),
            (7, "series", *iss, "2.25.200", "2.25.210", ""),
            (8, "instance", *iss, "2.25.200", "2.25.210", "2.25.211"),
            (9, "patient", "P-PLAIN", "", "", "", ""),
            (10, "study", "P-PLAIN", "", "2.25.300", "", ""),
            (11, "series", "P-PLAIN", "", "2.25.300", "2.25.310", ""),
            (12, "instance", "P-PLAIN", "", "2.25.300", "2.25.310", "2.25.311"),
            (13, "patient", "", "", "2.25.400", "", ""),  # no PatientID: keyed by its study
            (14, "study", "", "", "2.25.400", "", ""),
            (15, "series", "", "", "2.25.400", "2.25.410", ""),
            (16, "instance", "", "", "2.25.400", "2.25.410", "2.25.411"),
        ]
        assert changes == [Change(seq, at[seq], "create", *rest) for seq, *rest in expected]
        assert [path for _, path, _ in index.copies()] == [r for r in index.instance_paths() if "2.25.311" in r]

        # Storing into it afterwards works, and feeds the new fields.
        storage = Storage(schema3)
        storage.make_layout()
        ingest = Ingest(storage, index, Flushed(), Limits())
        ds = synth.ct(patient_id="P-ISS", issuer="HOSP A", study_uid="2.25.100", series_uid="2.25.120")
        ingest.store(received_from_file(synth.write(ds, schema3 / "new.dcm")))
        new = index.changes_since(16, 100)
        assert [(c.seq, c.level, c.patient_id, c.issuer, c.study_uid, c.series_uid, c.sop_uid) for c in new] == [
            (17, "series", *iss, "2.25.100", "2.25.120", ""),
            (18, "instance", *iss, "2.25.100", "2.25.120", ds.SOPInstanceUID),
        ]
        assert index.counts()["instances"] == 6
    finally:
        index.close()


def test_models_can_still_be_bound_for_a_while(schema3: Path) -> None:
    """The models describe the schema and bind to no index on their own."""
    path = schema3 / "index.sqlite"
    open_index(path).close()
    db = SqliteDatabase(str(path))
    patient = MODELS[0]
    assert patient._meta.database is None
    with db.bind_ctx(MODELS):
        assert sorted(p.patient_id for p in patient.select()) == ["", "P-ISS", "P-PLAIN"]
    db.close()
