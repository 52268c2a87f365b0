"""Concurrent STOW-RS requests for one new patient end with one patient
(DESIGN.md failure 1), over two worker processes (two index writers, the
HTTP port shared): STOW against STOW, and STOW against C-STORE."""

from __future__ import annotations

import io
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from pacsd.testing import peers, synth
from pacsd.testing.peers import free_port
from tests.e2e.conftest import DCMTK_ENV, Server

CONCURRENT = 20
BOUNDARY = "race"


@pytest.fixture(scope="module")
def racing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    http_port = free_port()
    server = Server(tmp_path_factory.mktemp("stow-race"), extra_toml=f"workers = 2\n[http]\nport = {http_port}\n")
    server.start()
    yield server, http_port
    server.stop()


def body(ds: Dataset) -> bytes:
    synth.set_meta(ds, ExplicitVRLittleEndian)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return head + out.getvalue() + f"\r\n--{BOUNDARY}--\r\n".encode()


def stow_all_at_once(http_port: int, objects: list[Dataset], start: threading.Barrier) -> list[int]:
    """One thread and one connection per object, released together."""
    statuses: list[int] = []
    content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'

    def send(ds: Dataset) -> None:
        data = body(ds)
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120) as client:
            start.wait()
            response = client.post("/dicomweb/studies", content=data, headers={"Content-Type": content_type})
            statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(ds,)) for ds in objects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def patients(server: Server, patient_id: str) -> list[Dataset]:
    responses, output = server.findscu(
        "-P", "QueryRetrieveLevel=PATIENT", f"PatientID={patient_id}", "NumberOfPatientRelatedStudies"
    )
    assert "Received Final Find Response (Success)" in output, output
    return responses


def test_20_concurrent_stows_of_one_new_patient_make_one_patient(racing: tuple[Server, int]) -> None:
    server, http_port = racing
    objects = [synth.ct(patient_id="STOW-RACE", issuer="HOSP", pixel_bytes=512) for _ in range(CONCURRENT)]
    statuses = stow_all_at_once(http_port, objects, threading.Barrier(CONCURRENT))
    assert statuses == [200] * CONCURRENT
    [patient] = patients(server, "STOW-RACE")
    assert patient.NumberOfPatientRelatedStudies == CONCURRENT
    assert server.stats()["patients"] == 1


def test_stows_racing_c_stores_of_one_new_patient_make_one_patient(racing: tuple[Server, int], tmp_path: Path) -> None:
    server, http_port = racing
    half = CONCURRENT // 2
    files = [
        synth.write(synth.ct(patient_id="MIXED-RACE", pixel_bytes=512), tmp_path / f"{i}.dcm") for i in range(half)
    ]
    start = threading.Barrier(half + 1)  # the STOW threads and the thread starting the storescu processes
    procs: list[subprocess.Popen[bytes]] = []

    def c_stores() -> None:
        start.wait()
        for path in files:
            cmd = [peers.dcmtk("storescu"), "-aec", server.ae_title, "127.0.0.1", str(server.port), str(path)]
            procs.append(subprocess.Popen(cmd, env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

    starter = threading.Thread(target=c_stores)
    starter.start()
    objects = [synth.ct(patient_id="MIXED-RACE", pixel_bytes=512) for _ in range(half)]
    statuses = stow_all_at_once(http_port, objects, start)
    starter.join()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode(errors="replace")
    assert statuses == [200] * half
    [patient] = patients(server, "MIXED-RACE")
    assert patient.NumberOfPatientRelatedStudies == CONCURRENT
