"""Two Archives in one process, on two data dirs: each SqliteIndex owns its
connections, so objects stored through one Archive, from many threads at
once, are seen by it alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsd.domain.query import InformationModel
from pacsd.domain.received import received_from_file
from pacsd.index.sqlite import SqliteIndex
from pacsd.services.archive import Archive
from pacsd.testing import synth
from tests.unit.conftest import Flushed, open_archive

THREADS = 4  # per index
PER_THREAD = 5


@dataclass
class Side:
    """One of the two archives, with what was sent to it."""

    name: str
    archive: Archive
    flushed: Flushed
    sent: list[Dataset] = field(default_factory=list)

    @property
    def index(self) -> SqliteIndex:
        return self.archive.index  # type: ignore[return-value]


def side(root: Path, name: str) -> Side:
    flushed = Flushed()
    return Side(name, open_archive(root / name, flushed), flushed)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    a, b = side(tmp_path, "a"), side(tmp_path, "b")
    yield a, b
    a.index.close()
    b.index.close()


def store_many(tmp_path: Path, archives: tuple[Side, ...]) -> None:
    """THREADS threads per archive, all at once, each storing one series."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS * len(archives))

    def run(target: Side, thread: int) -> None:
        try:
            datasets = synth.series(PER_THREAD, patient_id=f"{target.name}-{thread}", pixel_bytes=64)
            paths = [synth.write(ds, tmp_path / f"{target.name}-{thread}-{n}.dcm") for n, ds in enumerate(datasets)]
            start.wait()
            for ds, path in zip(datasets, paths, strict=True):
                target.archive.store(received_from_file(path))
                target.sent.append(ds)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t, n)) for t in archives for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def patient_ids(index: SqliteIndex) -> set[str]:
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = ""
    return {m.PatientID for m in index.matches(query, InformationModel.PATIENT_ROOT, 100)}


def sop_uids_of_study(index: SqliteIndex, study_uid: str) -> set[str]:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    return {i.sop_uid for i in index.instances(query, InformationModel.STUDY_ROOT, 100)}


def test_each_index_sees_only_its_own_rows(tmp_path: Path, two: tuple[Side, Side]) -> None:
    a, b = two
    store_many(tmp_path, two)
    for mine, other in ((a, b), (b, a)):
        own = {f"{mine.name}-{n}" for n in range(THREADS)}
        assert patient_ids(mine.index) == own
        counts = mine.index.counts()
        assert (counts["patients"], counts["studies"], counts["series"], counts["instances"]) == (
            THREADS, THREADS, THREADS, THREADS * PER_THREAD,
        )  # fmt: skip
        for ds in mine.sent[:: PER_THREAD - 1]:
            study = ds.StudyInstanceUID
            assert sop_uids_of_study(mine.index, study) == {
                d.SOPInstanceUID for d in mine.sent if d.StudyInstanceUID == study
            }
            assert sop_uids_of_study(other.index, study) == set()
            assert mine.index.stored_sops(study) and not other.index.stored_sops(study)
        changes = mine.index.changes_since(0, 1000)
        # One creation per patient, study, series and instance, numbered from 1 in this index alone.
        assert [c.seq for c in changes] == list(range(1, THREADS * (3 + PER_THREAD) + 1))
        assert {c.patient_id for c in changes} == own
        assert {c.sop_uid for c in changes if c.level == "instance"} == {d.SOPInstanceUID for d in mine.sent}
        # Every object was small: its write-ahead copy is in its own index.
        copies = {instance_id for instance_id, _, _ in mine.index.copies()}
        assert copies == set(mine.flushed.ids) and len(copies) == THREADS * PER_THREAD


def test_closing_one_index_leaves_the_other_working(tmp_path: Path, two: tuple[Side, Side]) -> None:
    a, b = two
    store_many(tmp_path, (a,))
    b.index.close()
    assert patient_ids(a.index) == {f"a-{n}" for n in range(THREADS)}
    a.archive.store(received_from_file(synth.write(synth.ct(patient_id="LATE"), tmp_path / "late.dcm")))
    assert "LATE" in patient_ids(a.index)
    reopened = SqliteIndex(b.index.path)
    reopened.start()
    b.archive.index = reopened  # the fixture closes it
    assert patient_ids(b.index) == set()
