"""In-process fixtures: an Archive on a real SQLite index and real files in tmp_path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import Outcome
from pacsd.domain.received import received_from_file
from pacsd.index.sqlite import SqliteIndex
from pacsd.services.archive import Archive
from pacsd.storage.files import Storage
from pacsd.testing import synth


class Flushed:
    """Stands in for the syncer (no thread, no flush): records the instance
    ids whose write-ahead copy was committed."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self._lock = threading.Lock()

    def written(self, instance_id: int) -> None:
        with self._lock:
            self.ids.append(instance_id)


def open_archive(data_dir: Path, flushed: Flushed | None = None) -> Archive:
    """An Archive on *data_dir* (created), its index started; close with ``archive.index.close()``."""
    storage = Storage(data_dir)
    storage.make_layout()
    index = SqliteIndex(storage.root / "index.sqlite")
    index.start()
    return Archive(ae_title="PACSD", limits=Limits(), index=index, storage=storage, flusher=flushed or Flushed())


def store(archive: Archive, ds: Dataset, work: Path) -> Outcome:
    """Store *ds* as if it had arrived: written as a Part 10 file under *work* first."""
    path = synth.write(ds, work / f"{ds.SOPInstanceUID}.dcm")
    return archive.store(received_from_file(path))


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    opened = open_archive(tmp_path / "data")
    yield opened
    opened.close()
    opened.index.close()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SqliteIndex]:
    opened = SqliteIndex(tmp_path / "index.sqlite")
    opened.start()
    yield opened
    opened.close()
