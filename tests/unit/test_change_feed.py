"""The change feed is written by the unit of work, in its transaction, and
read back in order through SqliteIndex.changes_since."""

from __future__ import annotations

import re
from pathlib import Path

import apsw
import pytest

from pacsd.domain.errors import IdentityConflict, StorageFailure
from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import Change, FetchRecord
from pacsd.domain.received import received_from_file
from pacsd.index.sqlite import SqliteIndex, Transaction
from pacsd.services.ingest import Ingest
from pacsd.storage.files import Storage
from pacsd.testing import synth
from tests.unit.conftest import Flushed

UTC_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


@pytest.fixture
def ingest(tmp_path: Path, index: SqliteIndex) -> Ingest:
    storage = Storage(tmp_path)
    storage.make_layout()
    return Ingest(storage, index, Flushed(), Limits())


def store(ingest: Ingest, tmp_path: Path, **kwargs: object) -> str:
    ds = synth.ct(pixel_bytes=64, **kwargs)  # type: ignore[arg-type]
    ingest.store(received_from_file(synth.write(ds, tmp_path / f"{ds.SOPInstanceUID}.dcm")))
    return str(ds.SOPInstanceUID)


def levels(changes: list[Change]) -> list[tuple[int, str, str]]:
    return [(c.seq, c.action, c.level) for c in changes]


def test_each_creation_is_an_entry_with_its_uids(index: SqliteIndex, ingest: Ingest, tmp_path: Path) -> None:
    sop = store(ingest, tmp_path, patient_id="P1", issuer="ISS", study_uid="2.25.1", series_uid="2.25.11")
    changes = index.changes_since(0, 10)
    assert levels(changes) == [(1, "create", "patient"), (2, "create", "study"), (3, "create", "series"),
                               (4, "create", "instance")]  # fmt: skip
    assert [(c.patient_id, c.issuer, c.study_uid, c.series_uid, c.sop_uid) for c in changes] == [
        ("P1", "ISS", "", "", ""),
        ("P1", "ISS", "2.25.1", "", ""),
        ("P1", "ISS", "2.25.1", "2.25.11", ""),
        ("P1", "ISS", "2.25.1", "2.25.11", sop),
    ]
    assert all(UTC_ISO.match(c.at) for c in changes)
    # A re-send changes nothing, so records nothing.
    ingest.store(received_from_file(tmp_path / f"{sop}.dcm"))
    assert index.changes_since(4, 10) == []


def test_the_old_uid_column_is_still_written(index: SqliteIndex, ingest: Ingest, tmp_path: Path) -> None:
    store(ingest, tmp_path, patient_id="P1", issuer="ISS", study_uid="2.25.1")
    store(ingest, tmp_path, patient_id=None, study_uid="2.25.2")
    conn = apsw.Connection(str(index.path), flags=apsw.SQLITE_OPEN_READONLY)
    uids = [uid for (uid,) in conn.execute("SELECT uid FROM change WHERE level IN ('patient', 'study') ORDER BY seq")]
    assert uids == ["(PatientID 'P1', Issuer 'ISS')", "2.25.1", "(no PatientID, study 2.25.2)", "2.25.2"]


def test_paging_with_since_and_limit(index: SqliteIndex, ingest: Ingest, tmp_path: Path) -> None:
    for n in range(3):
        store(ingest, tmp_path, patient_id=f"P{n}")
    everything = index.changes_since(0, 100)
    assert len(everything) == 12
    pages, since = [], 0
    while page := index.changes_since(since, 5):
        pages.append(page)
        since = page[-1].seq
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [c for p in pages for c in p] == everything
    assert index.changes_since(12, 5) == [] and index.changes_since(0, 0) == []
    with pytest.raises(ValueError):
        index.changes_since(0, -1)


def test_a_refused_object_records_no_change(index: SqliteIndex, ingest: Ingest, tmp_path: Path) -> None:
    store(ingest, tmp_path, patient_id="OWNER", study_uid="2.25.1")
    with pytest.raises(IdentityConflict):
        # The new patient row and its entry are made, then roll back with the savepoint.
        store(ingest, tmp_path, patient_id="INTRUDER", study_uid="2.25.1")
    assert {c.patient_id for c in index.changes_since(0, 100)} == {"OWNER"}
    assert len(index.changes_since(0, 100)) == 4


def test_a_change_commits_with_its_unit_of_work_or_not_at_all(index: SqliteIndex) -> None:
    def update(tx: Transaction) -> None:
        tx.changed("update", "study", 7, patient_id="P", issuer="I", study_uid="2.25.7")

    index.write(update, lambda _: None)
    [entry] = index.changes_since(0, 10)
    assert (entry.action, entry.level, entry.patient_id, entry.issuer, entry.study_uid) == (
        "update", "study", "P", "I", "2.25.7",
    )  # fmt: skip

    class Bug(Exception):
        pass

    def fails(tx: Transaction) -> None:
        update(tx)
        raise Bug

    with pytest.raises(Bug):  # a bug passes unchanged, and its change is not kept
        index.write(fails, lambda _: None)

    undone: list[None] = []

    def barrier_fails(tx: Transaction) -> None:
        update(tx)
        tx.before_commit("disk", lambda: (_ for _ in ()).throw(OSError(28, "No space left on device")))

    with pytest.raises(OSError):
        index.write(barrier_fails, undone.append)
    assert undone == [None]
    assert index.changes_since(0, 10) == [entry]


def test_a_full_index_is_a_storage_failure(index: SqliteIndex) -> None:
    def fill(tx: Transaction) -> None:
        tx.changed("update", "study", 1, study_uid="2.25.1")
        tx.conn.execute("PRAGMA max_page_count = 1")  # no room for one more page: SQLITE_FULL
        tx.record_fetch(FetchRecord("2.25.1", "UP", False, 1, 0, 0.0, "x" * 100_000))

    with pytest.raises(StorageFailure, match="index write failed"):
        index.write(fill, lambda _: None)
    index.write(lambda tx: tx.conn.execute("PRAGMA max_page_count = 1073741823"), lambda _: None)
    assert index.changes_since(0, 10) == []


def test_writes_after_close_are_a_storage_failure(tmp_path: Path) -> None:
    index = SqliteIndex(tmp_path / "index.sqlite")
    index.start()
    index.close()
    with pytest.raises(StorageFailure, match="closing"):
        index.write(lambda tx: tx.changed("update", "study", 1, study_uid="2.25.1"), lambda _: None)
