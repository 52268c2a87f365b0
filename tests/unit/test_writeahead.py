"""Write-ahead copies in process, with an index but no syncer (the state a
crash right after the acknowledgements leaves): each small object keeps one
copy, start-up rewrites whatever a crash may have lost, and large or
refused objects leave no copy."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsd.admin import fsck
from pacsd.bootstrap import Node, prepare
from pacsd.config import Settings, load
from pacsd.domain.errors import IdentityConflict
from pacsd.domain.outcomes import Result
from pacsd.domain.received import received_from_file
from pacsd.services.archive import Archive
from pacsd.services.ingest import WRITE_AHEAD_MAX
from pacsd.testing import synth
from tests.index_rows import copies


def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "pacsd.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    return load(config)


@pytest.fixture
def unsynced(tmp_path: Path) -> Iterator[tuple[Settings, Archive]]:
    """An archive whose index writer runs but whose syncer never flushes:
    the state a crash right after the acknowledgements leaves."""
    s = settings(tmp_path)
    prepare(s)
    node = Node(s)
    node.index.start()
    yield s, node.archive
    node.index.close()


def test_identical_re_sends_add_no_copy(tmp_path: Path, unsynced: tuple[Settings, Archive]) -> None:
    # No syncer runs here: every copy made stays, so the count is exact.
    s, archive = unsynced
    sent = [synth.write(ds, tmp_path / f"{n}.dcm") for n, ds in enumerate(synth.series(3, patient_id="AGAIN"))]
    assert [archive.store(received_from_file(f)).result for f in sent] == [Result.STORED] * 3
    assert copies(s.server.data_dir) == 3
    assert [archive.store(received_from_file(f)).result for f in sent] == [Result.ALREADY_STORED] * 3
    assert copies(s.server.data_dir) == 3


def test_start_up_rewrites_files_lost_before_their_flush(tmp_path: Path, unsynced: tuple[Settings, Archive]) -> None:
    s, archive = unsynced
    pair = synth.series(2, patient_id="LOST")
    alone = synth.ct(patient_id="LOST")
    for n, ds in enumerate([*pair, alone]):
        archive.store(received_from_file(synth.write(ds, tmp_path / f"{n}.dcm")))
    data_dir = s.server.data_dir
    assert copies(data_dir) == 3
    files = data_dir / "files"
    written = {p: p.read_bytes() for p in files.rglob("*.dcm")}
    # What a power loss can leave of files never flushed: an empty file, a
    # torn one, and a new study directory that never reached the disk.
    empty, torn = sorted(files.glob(f"{pair[0].StudyInstanceUID}/*/*.dcm"))
    empty.write_bytes(b"")
    torn.write_bytes(written[torn][:100])
    shutil.rmtree(files / alone.StudyInstanceUID)
    report = fsck.check(archive)
    assert len(report.restorable) == 3 and not report.missing_files and not report.clean
    prepare(s)  # what `pacsd serve` runs first
    assert copies(data_dir) == 0
    assert {p: p.read_bytes() for p in files.rglob("*.dcm")} == written
    assert fsck.check(archive).clean


def test_large_objects_are_fsynced_not_copied(tmp_path: Path, unsynced: tuple[Settings, Archive]) -> None:
    s, archive = unsynced
    big = synth.write(synth.ct(patient_id="BIG", pixel_bytes=WRITE_AHEAD_MAX + 1024), tmp_path / "big.dcm")
    small = synth.write(synth.ct(patient_id="SMALL"), tmp_path / "small.dcm")
    archive.store(received_from_file(big))
    assert copies(s.server.data_dir) == 0
    archive.store(received_from_file(small))
    assert copies(s.server.data_dir) == 1


def test_a_refused_object_leaves_no_copy(tmp_path: Path, unsynced: tuple[Settings, Archive]) -> None:
    s, archive = unsynced
    first = synth.ct(patient_id="OWNER")
    archive.store(received_from_file(synth.write(first, tmp_path / "a.dcm")))
    other = synth.ct(patient_id="INTRUDER", study_uid=first.StudyInstanceUID)
    with pytest.raises(IdentityConflict):
        archive.store(received_from_file(synth.write(other, tmp_path / "b.dcm")))
    assert copies(s.server.data_dir) == 1
