"""The caching proxy against a real upstream (Orthanc): merged C-FIND that
writes nothing, fetch on demand committed whole, and the fault matrix where
every case ends with no new index row and no staged file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove  # type: ignore[attr-defined]

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server, StoreSCP, free_port
from tests.e2e.fault_matrix import MATRIX
from tests.e2e.proxy_filters import GHOST_REAL, GHOST_STUDY
from tests.e2e.upstream import Orthanc

ROWS = ("patients", "studies", "series", "instances")
VIRTUAL = """
[virtual]
upstreams = ["MAINPACS"]

[virtual.MAINPACS]
response_timeout = 10
query_filter = "tests.e2e.proxy_filters:test_filter"
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
            extra=("-d", "-aem", destination, *extra),
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
    # Two workers: an upstream's C-STOREs for a fetch may reach either one.
    server = Server(work, extra_toml="workers = 2\n" + dest.toml() + gone + Orthanc.toml(upstream_port) + VIRTUAL)
    upstream = Orthanc(work, {"PACSD": server.port, "PACSDGET": free_port()}, upstream_port)
    studies = {
        "remote": _study(3, "PX-REMOTE"),
        "both": _study(2, "PX-BOTH"),
        "big": _study(300, "PX-BIG"),
        "pair": _study(20, "PX-PAIR"),
        "conflict": _study(3, "NATIONAL-123"),
        "midway": _study(4, "PX-MIDWAY"),
        "ghost": _study(3, "PX-GHOST", study_uid=GHOST_STUDY),
        "down": _study(2, "PX-DOWN"),
        "secret": _study(1, "SECRET-9"),
        "viaget": _study(3, "PX-VIAGET"),
        "getmethod": _study(3, "PX-GETMETHOD"),
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
    assert uid(clean, "secret") not in found, "the query filter dropped it"
    assert clean.rows() == before
    assert clean.staged() == []


def test_find_with_upstream_down_answers_locally_with_a_warning(clean: Env) -> None:
    clean.upstream.stop()
    try:
        responses, out = clean.server.findscu("-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", extra=("-d",))
    finally:
        clean.upstream.start()
    found = {str(r.StudyInstanceUID) for r in responses}
    assert uid(clean, "both") in found and uid(clean, "big") not in found
    assert "0xb000" in out.lower(), out[-1500:]
    assert "answered from local data only: cannot reach MAINPACS" in out
    assert clean.server.events("upstream_find_failed")


def test_getscu_through_the_proxy(clean: Env, tmp_path: Path) -> None:
    study = uid(clean, "viaget")
    result = clean.server.retrieve(
        "getscu", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}", out=tmp_path
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert len(list(tmp_path.iterdir())) == 3
    assert clean.fetches_started(study) == 1


def get_server(env: Env, workdir: Path, response_timeout: int) -> Server:
    """A second pacsd, PACSDGET (known to the upstream), fetching by C-GET."""
    virtual = VIRTUAL.replace("response_timeout = 10", f'response_timeout = {response_timeout}\nretrieve = "get"')
    toml = env.dest.toml() + Orthanc.toml(env.upstream.port) + virtual
    return Server(workdir, ae_title="PACSDGET", extra_toml=toml).start()


def test_upstream_retrieve_by_c_get(clean: Env, tmp_path: Path) -> None:
    server = get_server(clean, tmp_path, response_timeout=10)
    try:
        study = uid(clean, "getmethod")
        result = server.retrieve(
            "movescu", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}", extra=("-d", "-aem", "DEST")
        )
        assert final_status(result.stderr) == "0x0000", result.stderr[-1500:]
        assert server.stats()["instances"] == 3
        [started] = server.events("fetch_started")
        assert started["method"] == "get"
    finally:
        server.stop()


def test_fetch_then_served_locally_with_upstream_stopped(clean: Env) -> None:
    study = uid(clean, "remote")
    before = clean.rows()
    out = clean.move(study)
    assert final_status(out) == "0x0000", out[-2000:]
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
        assert final_status(out) == "0x0000", out[-2000:]
        assert len(clean.dest.received()) == 3
        assert clean.fetches_started(study) == 1, "served without asking the upstream"
    finally:
        clean.upstream.start()
    assert clean.server.stats()["fetches_done"] >= 1


# -- the fault matrix: each case ends with no new index row and no staged file.


def assert_untouched(env: Env, before: tuple[int, ...], case: str, status: str, said: str = "") -> None:
    assert env.rows() == before, f"{case}: index rows changed"
    assert env.staged() == [], f"{case}: staged files left: {env.staged()}"
    MATRIX.append((case, f"{status} {said}".strip(), "+0 | 0"))


def final_status(out: str) -> str:
    """'0xA702' etc. from movescu -d output: the final response's status."""
    _, found, tail = out.rpartition("Received Final Move Response")
    match = re.search(r"DIMSE Status\s*:\s*(0x[0-9a-fA-F]{4})", tail) if found else None
    return match.group(1).upper().replace("0X", "0x") if match else "(none)"


def comment(out: str) -> str:
    _, _, tail = out.rpartition("Received Final Move Response")
    match = re.search(r"LO \[(.*)\]\s+#\s*\d+, \d+ ErrorComment", tail)
    return match.group(1) if match else ""


def test_upstream_down(clean: Env) -> None:
    before = clean.rows()
    clean.upstream.stop()
    try:
        out = clean.move(uid(clean, "down"))
    finally:
        clean.upstream.start()
    assert final_status(out) == "0xA702", out[-1500:]
    assert "cannot reach MAINPACS" in comment(out)
    assert_untouched(clean, before, "upstream down", final_status(out), comment(out))


def test_upstream_refuses_our_ae_title(clean: Env, tmp_path: Path) -> None:
    stranger = Server(
        tmp_path, ae_title="STRANGER", extra_toml=clean.dest.toml() + Orthanc.toml(clean.upstream.port) + VIRTUAL
    ).start()
    try:
        result = stranger.retrieve(
            "movescu", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid(clean, 'down')}",
            extra=("-d", "-aem", "DEST"),
        )  # fmt: skip
        assert final_status(result.stderr) == "0xA702", result.stderr[-1500:]
        # Orthanc accepts the association, then aborts it at the first request
        # from an AE title it does not know.
        assert "MAINPACS" in comment(result.stderr), comment(result.stderr)
        assert stranger.stats()["instances"] == 0
        assert not [p for p in (stranger.data_dir / "staging").rglob("*.dcm")]
        said = f"{final_status(result.stderr)} {comment(result.stderr)}"
        MATRIX.append(("upstream refuses pacsd's AE", said, "+0 | 0"))
    finally:
        stranger.stop()


def test_upstream_move_fails_midway(clean: Env) -> None:
    before = clean.rows()
    out = clean.move(uid(clean, "midway"))
    assert final_status(out) == "0xA702", out[-1500:]
    assert "ended the C-MOVE with 0x" in comment(out), comment(out)
    assert clean.dest.received() == []
    assert_untouched(clean, before, "upstream C-MOVE fails midway", final_status(out), comment(out))


def test_upstream_sends_fewer_objects_than_it_announced(clean: Env) -> None:
    before = clean.rows()
    out = clean.move(GHOST_STUDY)
    assert final_status(out) == "0xA702", out[-1500:]
    assert "sent 2 of 3 objects" in comment(out), comment(out)
    assert_untouched(clean, before, "upstream sends fewer than announced", final_status(out), comment(out))


def test_identity_conflict_refuses_the_whole_fetch(clean: Env) -> None:
    before = clean.rows()
    out = clean.move(uid(clean, "conflict"))
    text = comment(out)
    assert "belongs to patient" in text and "NATIONAL-123" in text and "LOCAL-7" in text, out[-1500:]
    # The one local object of the study is still served.
    assert final_status(out) == "0xB000", out[-1500:]
    assert_untouched(clean, before, "PatientID conflicts with the local index", final_status(out), text)


def test_destination_unreachable_fetches_nothing(clean: Env) -> None:
    before = clean.rows()
    out = clean.move(uid(clean, "down"), destination="GONE")
    assert final_status(out) == "0xA801", out[-1500:]
    assert clean.fetches_started(uid(clean, "down")) == 0
    assert_untouched(clean, before, "destination unreachable", final_status(out), comment(out))


def _move_in_background(env: Env, study: str) -> tuple[threading.Thread, list[Dataset], AE]:
    """A pynetdicom C-MOVE running in a thread; returns its responses list."""
    ae = AE(ae_title="CANCELLER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", env.server.port, ae_title="PACSD")
    assert assoc.is_established
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = study
    responses: list[Dataset] = []

    def run() -> None:
        for status, _ in assoc.send_c_move(keys, "DEST", StudyRootQueryRetrieveInformationModelMove, msg_id=7):
            if status:
                responses.append(status)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ae.assoc = assoc  # type: ignore[attr-defined]
    return thread, responses, ae


def _wait_for_staged(env: Env, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.suffix == ".dcm" for p in env.staged()):
            return
        time.sleep(0.005)
    raise AssertionError("nothing was staged")


def _wait_until_clean(env: Env, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while env.staged() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_client_cancels_mid_fetch(clean: Env) -> None:
    before = clean.rows()
    study = uid(clean, "big")
    thread, responses, ae = _move_in_background(clean, study)
    _wait_for_staged(clean)
    assoc = ae.assoc  # type: ignore[attr-defined]
    cx = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelMove)
    assoc.send_c_cancel(7, cx.context_id)
    thread.join(60)
    assoc.release()
    assert responses and responses[-1].Status == 0xFE00, [hex(r.Status) for r in responses]
    assert responses[-1].NumberOfCompletedSuboperations == 0
    [failed] = [e for e in clean.server.events("fetch_failed") if e["study_uid"] == study][-1:]
    assert "cancelled by the client" in failed["reason"]
    assert any(e["study_uid"] == study for e in clean.server.events("fetch_started"))
    _wait_until_clean(clean)
    said = f"0xFE00 (remaining {responses[-1].NumberOfRemainingSuboperations}, completed 0)"
    assert_untouched(clean, before, "client cancels mid-fetch", said)


def test_client_aborts_mid_fetch(clean: Env) -> None:
    before = clean.rows()
    study = uid(clean, "big")
    thread, _, ae = _move_in_background(clean, study)
    _wait_for_staged(clean)
    ae.assoc.abort()  # type: ignore[attr-defined]
    thread.join(60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any("went away" in e["reason"] for e in clean.server.events("fetch_failed") if e["study_uid"] == study):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the fetch did not end when the client aborted")
    _wait_until_clean(clean)
    assert_untouched(clean, before, "client aborts the association", "(aborted: no status)")


def test_upstream_goes_silent_mid_fetch(clean: Env, tmp_path: Path) -> None:
    """The upstream stops answering (SIGSTOP) mid-fetch: response_timeout."""
    server = get_server(clean, tmp_path, response_timeout=2)
    assert clean.upstream.proc is not None
    try:
        result: list[subprocess.CompletedProcess[str]] = []
        study = uid(clean, "big")
        mover = threading.Thread(
            target=lambda: result.append(
                server.retrieve("movescu", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}",
                                extra=("-d", "-aem", "DEST"))
            )
        )  # fmt: skip
        mover.start()
        staging = server.data_dir / "staging"
        deadline = time.monotonic() + 30
        while not any(staging.glob("fetch-*/*.dcm")) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(clean.upstream.proc.pid, signal.SIGSTOP)
        try:
            mover.join(60)
        finally:
            os.kill(clean.upstream.proc.pid, signal.SIGCONT)
        out = result[0].stderr
        assert final_status(out) == "0xA702", out[-1500:]
        assert "sent nothing for 2 s" in comment(out), comment(out)
        assert server.stats()["instances"] == 0
        assert not [p for p in staging.rglob("*") if p.is_file() and "locks" not in p.parts]
        MATRIX.append(("upstream silent mid-fetch (timeout)", f"{final_status(out)} {comment(out)}", "+0 | 0"))
    finally:
        server.stop()


def test_two_clients_one_fetch(clean: Env) -> None:
    study = uid(clean, "pair")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(clean.move(study))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2
    assert [final_status(out) for out in results] == ["0x0000", "0x0000"], results
    assert clean.fetches_started(study) == 1
    assert len(clean.dest.received()) == 20  # the second copy of each overwrote the first


def test_kill9_mid_fetch_then_restart(clean: Env) -> None:
    before = clean.rows()
    study = uid(clean, "big")
    thread, _, ae = _move_in_background(clean, study)
    _wait_for_staged(clean)
    clean.server.kill9()
    thread.join(30)
    assert clean.staged(), "the crash left staged files (startup must clear them)"
    clean.server.start()
    assert clean.server.events("stale_temporaries_removed")
    assert_untouched(clean, before, "pacsd killed -9 mid-fetch, restarted", "(connection lost)")
