"""Concurrent creates of one patient / one study end with exactly one row.

DESIGN.md failure 1: two requests for the same new patient 4 ms apart both
saw "not found" and both created. Here 100 DCMTK clients race for real.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsd.testing import synth
from tests.e2e.conftest import DCMTK_ENV, Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """Two worker processes: races between processes, not only threads."""
    srv = Server(tmp_path, extra_toml="workers = 2\n").start()
    yield srv
    srv.stop()


CONCURRENT = 100


def store_concurrently(server: Server, files: list[Path]) -> None:
    """One storescu process (one association) per file, all at once."""
    procs = [
        subprocess.Popen(
            ["storescu", "-aec", server.ae_title, "127.0.0.1", str(server.port), str(f)],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for f in files
    ]
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        if proc.returncode != 0:
            failures.append(err.decode(errors="replace"))
    assert not failures, f"{len(failures)} storescu failed, first: {failures[0]}"


def test_100_concurrent_studies_of_one_new_patient_make_one_patient(server: Server, tmp_path: Path) -> None:
    files = [
        synth.write(synth.ct(patient_id="RACE-PAT", issuer="HOSP", pixel_bytes=512), tmp_path / f"{i}.dcm")
        for i in range(CONCURRENT)
    ]
    store_concurrently(server, files)
    stats = server.stats()
    assert (stats["patients"], stats["studies"], stats["instances"]) == (1, CONCURRENT, CONCURRENT)
    assert len(server.files()) == CONCURRENT


def test_100_concurrent_objects_of_one_new_study_make_one_study(server: Server, tmp_path: Path) -> None:
    study, series = synth.new_uid(), synth.new_uid()
    files = [
        synth.write(
            synth.ct(patient_id="RACE-STUDY", study_uid=study, series_uid=series, pixel_bytes=512),
            tmp_path / f"{i}.dcm",
        )
        for i in range(CONCURRENT)
    ]
    store_concurrently(server, files)
    stats = server.stats()
    assert (stats["patients"], stats["studies"], stats["series"], stats["instances"]) == (1, 1, 1, CONCURRENT)
