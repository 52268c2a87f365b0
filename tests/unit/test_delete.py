"""Deleting studies, series and instances in process, on a real SQLite
index and real files: rows, files, parents left empty, the change feed, the
proxy's fetch records, the metadata cache, write-ahead copies, and the
states a crash between the steps leaves (fsck, start-up)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsd.admin import fsck
from pacsd.bootstrap import Node, prepare
from pacsd.config import Settings, load
from pacsd.domain.deletion import DeleteTarget
from pacsd.domain.errors import NoSuchResource
from pacsd.domain.outcomes import FetchRecord, Result, StoredInstance
from pacsd.services import deletion
from pacsd.services.archive import Archive
from pacsd.testing import synth
from tests.index_rows import copies
from tests.unit.conftest import store
from tests.unit.test_worklist import item


def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "pacsd.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    return load(config)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Settings, Archive]]:
    """An archive whose syncer never flushes: every small object keeps its
    write-ahead copy (its file is not yet known to be on disk)."""
    s = settings(tmp_path)
    prepare(s)
    opened = Node(s)
    opened.index.start()
    yield s, opened.archive
    opened.archive.close()
    opened.index.close()


def files(archive: Archive) -> set[str]:
    root = archive.storage.files
    return {p.relative_to(root).as_posix() for p in root.rglob("*.dcm")}


def feed(archive: Archive, after: int) -> list[tuple[str, str, str]]:
    return [(c.action, c.level, c.sop_uid or c.series_uid or c.study_uid) for c in archive.changes_since(after)]


def last_seq(archive: Archive) -> int:
    changes = archive.changes_since(0, 100000)
    return changes[-1].seq if changes else 0


def study_of(
    archive: Archive, tmp_path: Path, patient_id: str, series: int, per_series: int, issuer: str | None = None
) -> list[Dataset]:
    study = synth.new_uid()
    objects = []
    for _ in range(series):
        objects += synth.series(per_series, patient_id=patient_id, issuer=issuer, study_uid=study)
    for ds in objects:
        assert store(archive, ds, tmp_path).result is Result.STORED
    return objects


def test_deleting_an_instance_keeps_its_series(node: tuple[Settings, Archive], tmp_path: Path) -> None:
    s, archive = node
    a, b, c = study_of(archive, tmp_path, "DEL1", 1, 3)
    assert copies(s.server.data_dir) == 3  # not flushed: each file is still only sure in its copy
    seq = last_seq(archive)
    deleted = archive.delete(DeleteTarget(b.StudyInstanceUID, b.SeriesInstanceUID, b.SOPInstanceUID))
    assert [i.sop_uid for i in deleted.instances] == [b.SOPInstanceUID]
    assert (deleted.series, deleted.study, deleted.patient) == ([], False, False)
    assert feed(archive, seq) == [("delete", "instance", b.SOPInstanceUID)]
    assert archive.counts()["instances"] == 2
    assert copies(s.server.data_dir) == 2  # its write-ahead copy went with its row
    assert files(archive) == {archive.storage.relative_path(a.StudyInstanceUID, a.SeriesInstanceUID, x.SOPInstanceUID)
                              for x in (a, c)}  # fmt: skip
    assert archive.index.removals() == []
    assert fsck.check(archive).clean


def test_deleting_a_study_removes_empty_parents_and_their_directories(
    node: tuple[Settings, Archive], tmp_path: Path
) -> None:
    _, archive = node
    objects = study_of(archive, tmp_path, "DEL2", 2, 2)
    study = objects[0].StudyInstanceUID
    seq = last_seq(archive)
    deleted = archive.delete(DeleteTarget(study))
    assert len(deleted.instances) == 4 and len(deleted.series) == 2 and deleted.study and deleted.patient
    entries = feed(archive, seq)
    assert [e[:2] for e in entries] == [("delete", "instance")] * 2 + [("delete", "series")] + [
        ("delete", "instance")
    ] * 2 + [("delete", "series"), ("delete", "study"), ("delete", "patient")]
    patient_entry = archive.changes_since(seq)[-1]
    assert (patient_entry.patient_id, patient_entry.issuer) == ("DEL2", "")
    assert archive.counts() | {"bytes": 0} == {
        "patients": 0, "studies": 0, "series": 0, "instances": 0, "bytes": 0, "fetches_done": 0, "fetches_failed": 0
    }  # fmt: skip
    assert files(archive) == set()
    assert not (archive.storage.files / study).exists()  # the study's directories went with it
    assert fsck.check(archive).clean


def test_the_patient_stays_while_anything_else_refers_to_it(node: tuple[Settings, Archive], tmp_path: Path) -> None:
    _, archive = node
    [one] = study_of(archive, tmp_path, "KEEP", 1, 1)
    [other] = study_of(archive, tmp_path, "KEEP", 1, 1)
    assert archive.delete(DeleteTarget(one.StudyInstanceUID)).patient is False  # another study
    archive.worklist_create([item("WLKEEP")])
    [imaged] = study_of(archive, tmp_path, "WLKEEP", 1, 1, issuer="HOSP")  # the item's patient
    deleted = archive.delete(DeleteTarget(imaged.StudyInstanceUID))
    assert deleted.study and not deleted.patient  # its worklist item refers to it
    assert archive.counts()["patients"] == 2
    assert archive.delete(DeleteTarget(other.StudyInstanceUID)).patient is True


@pytest.mark.parametrize("which", ["study", "series elsewhere", "instance elsewhere", "no series", "no instance"])
def test_nothing_changes_when_the_target_is_not_stored(
    node: tuple[Settings, Archive], tmp_path: Path, which: str
) -> None:
    _, archive = node
    a = study_of(archive, tmp_path, "NONE", 1, 1)[0]
    b = study_of(archive, tmp_path, "NONE", 1, 1)[0]
    target = {
        "study": DeleteTarget(synth.new_uid()),
        "series elsewhere": DeleteTarget(a.StudyInstanceUID, b.SeriesInstanceUID),
        "instance elsewhere": DeleteTarget(a.StudyInstanceUID, a.SeriesInstanceUID, b.SOPInstanceUID),
        "no series": DeleteTarget(a.StudyInstanceUID, synth.new_uid()),
        "no instance": DeleteTarget(a.StudyInstanceUID, a.SeriesInstanceUID, synth.new_uid()),
    }[which]
    seq, before, stored = last_seq(archive), archive.counts(), files(archive)
    with pytest.raises(NoSuchResource, match="no such"):
        archive.delete(target)
    assert (last_seq(archive), archive.counts(), files(archive)) == (seq, before, stored)


def test_a_crash_before_the_unlink_leaves_files_listed_that_start_up_removes(
    node: tuple[Settings, Archive], tmp_path: Path
) -> None:
    s, archive = node
    objects = study_of(archive, tmp_path, "CRASH", 1, 3)
    # The rows' commit, and no unlink: what a kill -9 right after it leaves.
    archive.index.write(lambda tx: tx.delete(DeleteTarget(objects[0].StudyInstanceUID)), lambda _: None)
    assert len(files(archive)) == 3 and len(archive.index.removals()) == 3
    report = fsck.check(archive)
    assert sorted(report.pending_removal) == sorted(files(archive))
    assert report.unindexed_files == [] and not report.clean
    fsck.reindex(archive, report)  # must not bring the deleted objects back
    assert archive.counts()["instances"] == 0
    prepare(s)  # start-up
    assert files(archive) == set() and archive.index.removals() == []
    assert fsck.check(archive).clean


def test_an_object_stored_again_before_the_unlink_keeps_its_file(
    node: tuple[Settings, Archive], tmp_path: Path
) -> None:
    _, archive = node
    [ds] = study_of(archive, tmp_path, "AGAIN", 1, 1)
    archive.index.write(lambda tx: tx.delete(DeleteTarget(ds.StudyInstanceUID)), lambda _: None)
    assert store(archive, ds, tmp_path).result is Result.STORED  # same UIDs: the same path
    assert deletion.finish(archive.index, archive.storage) == 1
    assert len(files(archive)) == 1 and archive.counts()["instances"] == 1
    assert fsck.check(archive).clean


def test_a_delete_makes_the_proxys_fetch_of_the_study_stale(node: tuple[Settings, Archive], tmp_path: Path) -> None:
    _, archive = node
    a, _ = study_of(archive, tmp_path, "FETCHED", 1, 2)
    study = a.StudyInstanceUID
    archive.record_fetch(FetchRecord(study, "UP", True, 2, 2, 0.1))
    assert archive.index.fetched_whole(study)
    archive.delete(DeleteTarget(study, a.SeriesInstanceUID, a.SOPInstanceUID))
    assert not archive.index.fetched_whole(study)  # a retrieve through the proxy fetches it again
    archive.record_fetch(FetchRecord(study, "UP", True, 2, 2, 0.1))  # ...and a new fetch counts
    assert archive.index.fetched_whole(study)


def test_the_metadata_of_a_deleted_instance_is_forgotten(node: tuple[Settings, Archive], tmp_path: Path) -> None:
    _, archive = node
    [ds] = study_of(archive, tmp_path, "META", 1, 1)
    relative = archive.storage.relative_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    instance = StoredInstance(ds.SOPInstanceUID, ds.SOPClassUID, "1.2.840.10008.1.2.1", relative)
    archive.metadata([instance])
    entry = archive.metadata_cache.root / (relative + ".json")
    assert entry.is_file()
    archive.delete(DeleteTarget(ds.StudyInstanceUID))
    assert not entry.exists()
