"""Small objects are committed with a write-ahead copy of their bytes and
flushed to their files in batches: the copies drain while serving and on a
clean stop (in process, without a syncer: tests/unit/test_writeahead.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom

from pacsd.domain.outcomes import Result
from pacsd.testing import synth
from tests.e2e.conftest import Server
from tests.index_rows import copies


def test_copies_drain_while_serving_and_files_are_exact(tmp_path: Path) -> None:
    sent = [synth.write(ds, tmp_path / f"{n}.dcm") for n, ds in enumerate(synth.series(30, patient_id="WA"))]
    server = Server(tmp_path).start()
    try:
        server.storescu(*sent)
        deadline = time.monotonic() + 10
        while copies(server.data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert copies(server.data_dir) == 0, "the syncer did not flush the stored files"
        # Identical re-sends are answered as already stored and leave no copy.
        # (The syncer could drain a copy they made before this looks: that
        # they make none is proven in process, without a syncer, below.)
        server.storescu(*sent[:5])
        again = {ds.SOPInstanceUID for ds in map(pydicom.dcmread, sent[:5])}
        results = {e["sop_instance_uid"]: e["result"] for e in server.events("stored")[-5:]}
        assert results == dict.fromkeys(again, Result.ALREADY_STORED.value)
        assert copies(server.data_dir) == 0
    finally:
        server.stop()
    stored = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).PixelData for p in server.files()}
    assert stored == {ds.SOPInstanceUID: ds.PixelData for ds in map(pydicom.dcmread, sent)}


def test_clean_stop_flushes_everything(tmp_path: Path) -> None:
    sent = [synth.write(ds, tmp_path / f"{n}.dcm") for n, ds in enumerate(synth.series(20, patient_id="STOP"))]
    server = Server(tmp_path).start()
    try:
        server.storescu(*sent)
    finally:
        server.stop()  # at once: the last batch is flushed on the way out
    assert copies(server.data_dir) == 0
    assert len(server.files()) == len(sent)
    assert not [p for p in (server.data_dir / "tmp").rglob("*") if p.is_file()]  # spare files too are removed
