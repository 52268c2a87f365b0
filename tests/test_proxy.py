"""The caching proxy against a real upstream (Orthanc): merged C-FIND that
writes nothing, fetch on demand committed whole, and the fault matrix where
every case ends with no new index row and no staged file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsd import synth
from tests.conftest import SCU, Server, StoreSCP, free_port
from tests.proxy_filters import GHOST_REAL, GHOST_STUDY
from tests.upstream import Orthanc

ROWS = ("patients", "studies", "series", "instances")
VIRTUAL = """
[virtual]
upstreams = ["MAINPACS"]

[virtual.MAINPACS]
response_timeout = 10
query_filter = "tests.proxy_filters:announce_ghost"
"""


@dataclass
class Env:
    work: Path
    upstream: Orthanc
    server: Server
    dest: StoreSCP
    studies: dict[str, list[Dataset]]

    def rows(self) -> tuple[int, ...]:
        stats = self.server.stats()
        return tuple(stats[k] for k in ROWS)

    def staged(self) -> list[Path]:
        staging = self.server.data_dir / "staging"
        return [p for p in staging.rglob("*") if p.is_file() and "locks" not in p.parts]

    def move(self, study: str, destination: str = "DEST", extra: tuple[str, ...] = ()) -> str:
        result = self.server.retrieve(
            "movescu", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}",
            extra=("-v", "-aem", destination, *extra),
        )  # fmt: skip
        return result.stderr

    def fetches_started(self, study: str) -> int:
        return sum(1 for e in self.server.events("fetch_started") if e["study_uid"] == study)


def _study(n: int, patient_id: str, **kwargs: object) -> list[Dataset]:
    return synth.series(n, patient_id=patient_id, patient_name=f"Proxy^{patient_id}", pixel_bytes=512, **kwargs)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("proxy")
    dest = StoreSCP(work)
    upstream_port = free_port()
    gone = f'[remotes.GONE]\nhost = "127.0.0.1"\nport = {free_port()}\n'
    server = Server(work, extra_toml=dest.toml() + gone + Orthanc.toml(upstream_port) + VIRTUAL)
    upstream = Orthanc(work, {"PACSD": server.port}, upstream_port)
    studies = {
        "remote": _study(3, "PX-REMOTE"),
        "both": _study(2, "PX-BOTH"),
        "big": _study(300, "PX-BIG"),
        "pair": _study(20, "PX-PAIR"),
        "conflict": _study(3, "NATIONAL-123"),
        "midway": _study(4, "PX-MIDWAY"),
        "ghost": _study(3, "PX-GHOST", study_uid=GHOST_STUDY),
        "down": _study(2, "PX-DOWN"),
    }
    studies["ghost"][0].SOPInstanceUID = GHOST_REAL
    studies["ghost"][0].file_meta.MediaStorageSOPInstanceUID = GHOST_REAL
    # Midway: the upstream holds one object pacsd refuses (its UID is not a UID).
    studies["midway"][2].SOPInstanceUID = studies["midway"][2].file_meta.MediaStorageSOPInstanceUID = "1.2.3.x9"
    try:
        upstream.start()
        upstream.store([ds for name in studies for ds in studies[name]])
        server.start()
        # Local before any fetch: one study also upstream; the conflict study's
        # first object under the local patient ID.
        local_conflict = studies["conflict"][0].copy()
        local_conflict.PatientID = "LOCAL-7"
        assert all(s.Status == 0 for s in SCU(server).store(*studies["both"], local_conflict))
        yield Env(work, upstream, server, dest, studies)
    finally:
        server.stop()
        upstream.stop()
        dest.stop()


@pytest.fixture
def clean(env: Env) -> Env:
    for path in env.dest.out.iterdir():
        path.unlink()
    return env


def uid(env: Env, name: str) -> str:
    return str(env.studies[name][0].StudyInstanceUID)


def test_find_merges_local_and_upstream_and_writes_nothing(clean: Env) -> None:
    before = clean.rows()
    responses, out = clean.server.findscu(
        "-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID", "NumberOfStudyRelatedInstances"
    )
    found = [str(r.StudyInstanceUID) for r in responses]
    for name in ("remote", "both", "big", "conflict"):
        assert uid(clean, name) in found, out
    assert found.count(uid(clean, "both")) == 1, "local and upstream copies merged"
    assert {str(r.RetrieveAETitle) for r in responses} == {"PACSD"}
    assert clean.rows() == before
    assert clean.staged() == []


def test_fetch_then_served_locally_with_upstream_stopped(clean: Env) -> None:
    study = uid(clean, "remote")
    before = clean.rows()
    out = clean.move(study)
    assert "Received Final Move Response (Success)" in out, out[-2000:]
    assert len(clean.dest.received()) == 3
    assert clean.rows()[3] == before[3] + 3
    assert clean.fetches_started(study) == 1
    [done] = [e for e in clean.server.events("fetch_done") if e["study_uid"] == study]
    assert done["expected"] == 3 and done["received"] == 3
    clean.upstream.stop()
    try:
        for path in clean.dest.out.iterdir():
            path.unlink()
        out = clean.move(study)
        assert "Received Final Move Response (Success)" in out, out[-2000:]
        assert len(clean.dest.received()) == 3
        assert clean.fetches_started(study) == 1, "served without asking the upstream"
    finally:
        clean.upstream.start()
    assert clean.server.stats()["fetches_done"] >= 1
