"""DICOMweb DELETE against a real `pacsd serve`: dicomweb-client deletes an
instance, a series and a study stored over DIMSE, and QIDO, WADO, C-FIND,
the change feed, the disk and fsck agree they are gone; bad requests change
nothing; kill -9 at several moments of a 300-instance delete leaves the
study whole or gone, fsck clean; a delete racing C-STOREs into the same
study leaves every row with its file; the caching proxy fetches a study
again once part of it was deleted."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from requests import HTTPError

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server, StoreSCP, free_port, pacsd_cmd
from tests.e2e.upstream import Orthanc


def http_server(work: Path, extra: str = "") -> tuple[Server, str]:
    port = free_port()
    return Server(work, extra_toml=f"{extra}[http]\nport = {port}\n"), f"http://127.0.0.1:{port}"


def fsck(server: Server) -> str:
    result = subprocess.run(pacsd_cmd("fsck", "--config", str(server.config)), capture_output=True, text=True)
    return result.stdout


def changes(server: Server, since: int = 0) -> list[dict[str, object]]:
    cmd = pacsd_cmd("changes", "--config", str(server.config), "--json", "--since", str(since), "--limit", "100000")
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def study(patient_id: str, series: int, per_series: int, pixel_bytes: int = 512) -> list[Dataset]:
    uid = synth.new_uid()
    objects: list[Dataset] = []
    for _ in range(series):
        objects += synth.series(per_series, patient_id=patient_id, study_uid=uid, pixel_bytes=pixel_bytes)
    return objects


def stored(server: Server, *objects: Dataset) -> None:
    assert all(status.Status == 0 for status in SCU(server).store(*objects))


def on_disk(server: Server, study_uid: str) -> list[Path]:
    return sorted((server.data_dir / "files" / study_uid).rglob("*.dcm"))


def test_delete_instance_series_study(tmp_path: Path) -> None:
    server, base = http_server(tmp_path)
    server.start()
    try:
        a = study("DELPAT", 2, 2)
        b = study("DELPAT", 1, 1)
        stored(server, *a, *b)
        study_a, study_b = a[0].StudyInstanceUID, b[0].StudyInstanceUID
        series_1, series_2 = a[0].SeriesInstanceUID, a[2].SeriesInstanceUID
        gone = a[0].SOPInstanceUID
        client = DICOMwebClient(url=base + "/dicomweb")
        seq = changes(server)[-1]["seq"]
        assert isinstance(seq, int)

        client.delete_instance(study_a, series_1, gone)
        left = {ds["00080018"]["Value"][0] for ds in client.search_for_instances(study_instance_uid=study_a)}
        assert left == {ds.SOPInstanceUID for ds in a[1:]}
        with pytest.raises(HTTPError) as wado:
            client.retrieve_instance(study_a, series_1, gone)
        assert wado.value.response.status_code == 404
        assert len(on_disk(server, study_a)) == 3

        client.delete_series(study_a, series_2)
        series = [ds["0020000E"]["Value"][0] for ds in client.search_for_series(study_instance_uid=study_a)]
        assert series == [series_1]
        found, _ = server.findscu(
            "-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study_a}", "SeriesInstanceUID="
        )
        assert [ds.SeriesInstanceUID for ds in found] == [series_1]

        client.delete_study(study_a)
        assert [ds["0020000D"]["Value"][0] for ds in client.search_for_studies()] == [study_b]
        found, _ = server.findscu("-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID=")
        assert [ds.StudyInstanceUID for ds in found] == [study_b]
        assert not (server.data_dir / "files" / study_a).exists()
        assert len(server.files()) == 1

        deletes = [(c["level"], c["sop_uid"] or c["series_uid"] or c["study_uid"]) for c in changes(server, seq)]
        assert deletes == [
            ("instance", gone),
            ("instance", a[2].SOPInstanceUID),
            ("instance", a[3].SOPInstanceUID),
            ("series", series_2),
            ("instance", a[1].SOPInstanceUID),
            ("series", series_1),
            ("study", study_a),  # the patient stays: study B is still theirs
        ]
        assert all(c["action"] == "delete" and c["patient_id"] == "DELPAT" for c in changes(server, seq))
        assert fsck(server).strip() == "clean"
        assert [e["delete_level"] for e in server.events("deleted")] == ["instance", "series", "study"]
    finally:
        server.stop()


def test_bad_deletes_change_nothing_and_the_server_keeps_serving(tmp_path: Path) -> None:
    server, base = http_server(tmp_path)
    server.start()
    try:
        a, b = study("BADDEL", 1, 1), study("BADDEL", 1, 1)
        stored(server, *a, *b)
        study_a, series_b, sop_b = a[0].StudyInstanceUID, b[0].SeriesInstanceUID, b[0].SOPInstanceUID
        series_a = a[0].SeriesInstanceUID
        before, feed = server.stats(), changes(server)
        cases = [
            (f"/studies/{synth.new_uid()}", 404, "no such study"),
            (f"/studies/{study_a}/series/{series_b}", 404, "no such series"),  # of another study
            (f"/studies/{study_a}/series/{series_a}/instances/{sop_b}", 404, "no such instance"),
            ("/studies/1.2.abc", 400, "Study Instance UID in the path is not a valid UID"),
            (f"/studies/{study_a}/series/1..2", 400, "Series Instance UID"),
            (f"/studies/{study_a}/series/{series_a}/instances/x", 400, "SOP Instance UID"),
        ]
        with httpx.Client(base_url=base + "/dicomweb") as http:
            for path, status, said in cases:
                answer = http.delete(path)
                assert answer.status_code == status, (path, answer.text)
                assert said in answer.json()["error"], answer.text
        assert (server.stats(), changes(server)) == (before, feed)
        assert len(server.files()) == 2
        server.echoscu()
        assert len(DICOMwebClient(url=base + "/dicomweb").search_for_studies()) == 2
    finally:
        server.stop()


def send_delete(base: str, path: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"DELETE {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode())
    return sock


def index_count(data_dir: Path, table: str) -> int:
    db = apsw.Connection(str(data_dir / "index.sqlite"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        (count,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(count)
    finally:
        db.close()


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the moment to kill never came"


def test_kill_9_mid_delete_leaves_the_study_whole_or_gone(tmp_path: Path) -> None:
    server, base = http_server(tmp_path)
    big = study("KILLDEL", 3, 100)
    uid = big[0].StudyInstanceUID
    src = tmp_path / "src"
    src.mkdir()
    sent = [synth.write(ds, src / f"{n}.dcm") for n, ds in enumerate(big)]
    subprocess.run(pacsd_cmd("import", "--config", str(server.config), str(src)), check=True, capture_output=True)
    golden = tmp_path / "golden"
    shutil.copytree(server.data_dir, golden)
    paths = sorted(p.relative_to(golden / "files").as_posix() for p in (golden / "files").rglob("*.dcm"))
    assert len(paths) == len(sent)
    first = server.data_dir / "files" / paths[0]  # removals go in path order

    # When to kill, after the DELETE is sent: at once (the request not yet
    # read); once its rows are committed and its files listed (polling the
    # index); once the first file is unlinked (the rest being removed).
    moments: dict[str, Callable[[], None]] = {
        "at once": lambda: None,
        "rows committed": lambda: wait_for(lambda: index_count(server.data_dir, "removal") > 0 or not first.exists()),
        "unlinking": lambda: wait_for(lambda: not first.exists()),
    }
    outcomes = []
    for moment, wait in moments.items():
        shutil.rmtree(server.data_dir)
        shutil.copytree(golden, server.data_dir)
        server.start()
        sock = send_delete(base, f"/dicomweb/studies/{uid}")
        wait()
        listed = index_count(server.data_dir, "removal")
        server.kill9()
        sock.close()
        restarts = len(server.events("deleted_files_removed"))
        server.start()
        try:
            instances = index_count(server.data_dir, "instance")
            files = on_disk(server, uid)
            assert (instances, len(files)) in ((300, 300), (0, 0)), f"kill {moment}: a mix"
            assert fsck(server).strip() == "clean", f"kill {moment}"
            if instances == 0:
                assert not (server.data_dir / "files" / uid).exists()
            removed_at_start = len(server.events("deleted_files_removed")) > restarts
            outcomes.append((moment, "gone" if instances == 0 else "whole", listed, removed_at_start))
        finally:
            server.stop()
    print("kill -9 mid-delete (moment, study after restart, files listed at the kill, removed at start-up):", outcomes)
    assert outcomes[-1][1] == "gone"  # a file was unlinked: the rows had been committed


def test_a_delete_racing_stores_into_the_study_leaves_no_row_without_its_file(tmp_path: Path) -> None:
    server, base = http_server(tmp_path, extra="workers = 2\n")
    first = study("RACEDEL", 1, 20)
    uid = first[0].StudyInstanceUID
    late = synth.series(120, patient_id="RACEDEL", study_uid=uid, pixel_bytes=512)
    late += [synth.ct(patient_id="RACEDEL", study_uid=uid, series_uid=first[0].SeriesInstanceUID) for _ in range(40)]
    src = tmp_path / "src"
    src.mkdir()
    late_files = [synth.write(ds, src / f"{n}.dcm") for n, ds in enumerate(late)]
    server.start()
    try:
        stored(server, *first)
        statuses: list[int] = []

        def deleter() -> None:
            with httpx.Client(base_url=base + "/dicomweb") as http:
                for _ in range(6):
                    statuses.append(http.delete(f"/studies/{uid}").status_code)
                    time.sleep(0.05)

        thread = threading.Thread(target=deleter)
        thread.start()
        server.storescu(*late_files, check=False)  # some may be refused mid-race; none may leave a row without a file
        thread.join()
        assert statuses[0] == 204 and set(statuses) <= {204, 404}
        print("racing deletes answered", statuses, "instances left", server.stats()["instances"])
        assert fsck(server).strip() == "clean"
        instances = server.stats()["instances"]
        assert instances == len(on_disk(server, uid))
        if instances:
            held = DICOMwebClient(url=base + "/dicomweb").search_for_instances(study_instance_uid=uid)
            assert len(held) == instances
    finally:
        server.stop()


VIRTUAL = '\n[virtual]\nupstreams = ["MAINPACS"]\n\n[virtual.MAINPACS]\nresponse_timeout = 10\n'


def test_the_proxy_fetches_a_study_again_after_part_of_it_was_deleted(tmp_path: Path) -> None:
    dest = StoreSCP(tmp_path)
    upstream_port = free_port()
    http = free_port()
    server = Server(
        tmp_path, extra_toml=dest.toml() + Orthanc.toml(upstream_port) + VIRTUAL + f"[http]\nport = {http}\n"
    )
    upstream = Orthanc(tmp_path, {"PACSD": server.port}, upstream_port)
    remote = synth.series(3, patient_id="PX-DEL", pixel_bytes=512)
    uid = remote[0].StudyInstanceUID
    try:
        upstream.start()
        upstream.store(remote)
        server.start()

        def move() -> None:
            keys = ("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid}")
            result = server.retrieve("movescu", "-S", *keys, extra=("-aem", "DEST"))
            assert result.returncode == 0 and "Error" not in result.stderr, result.stderr[-2000:]

        move()
        fetches = [e for e in server.events("fetch_started") if e["study_uid"] == uid]
        assert len(fetches) == 1 and server.stats()["instances"] == 3
        ds = remote[1]
        url = f"http://127.0.0.1:{http}/dicomweb/studies/{uid}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        assert httpx.delete(url).status_code == 204
        assert server.stats()["instances"] == 2
        move()
        fetches = [e for e in server.events("fetch_started") if e["study_uid"] == uid]
        assert len(fetches) == 2, "the deleted instance was believed local"
        assert server.stats()["instances"] == 3
        assert fsck(server).strip() == "clean"
    finally:
        server.stop()
        upstream.stop()
        dest.stop()
