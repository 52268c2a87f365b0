"""A STOW-RS part is bounded as it streams: past the largest object any
SOP class may be (max_object_bytes, object_bytes_by_class), the upload is
refused 413 before the rest of it reaches the disk, and nothing is stored."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from pydicom.dataset import Dataset

from pacsd.testing import synth
from pacsd.testing.peers import free_port
from tests.e2e.conftest import Server

LIMIT = 1024 * 1024
BOUNDARY = "limit-boundary"
LIMITS = (
    f"[limits]\nmax_object_bytes = {LIMIT}\n"
    "[limits.object_bytes_by_class]\n"
    f'"1.2.840.10008.5.1.4.1.1.88." = {LIMIT}\n"1.2.840.10008.5.1.4.1.1.11." = {LIMIT}\n'
)


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, httpx.Client]]:
    http_port = free_port()
    server = Server(tmp_path_factory.mktemp("stow-limits"), extra_toml=f"[http]\nport = {http_port}\n" + LIMITS)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as client:
            yield server, client
    finally:
        server.stop()


def _stream(head: bytes, filler: int, tail: bytes) -> Iterator[bytes]:
    """A body whose middle is *filler* bytes, sent in 64 KiB chunks."""
    yield head
    chunk = b"\0" * 65536
    for _ in range(filler // len(chunk)):
        yield chunk
    yield tail


def test_an_oversized_part_is_refused_as_it_streams_and_nothing_is_stored(web: tuple[Server, httpx.Client]) -> None:
    server, client = web
    small = synth.ct(patient_id="LIMIT-OK")
    head = (
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + part10(small)
        + f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    )
    body = _stream(head, 8 * LIMIT, f"\r\n--{BOUNDARY}--\r\n".encode())  # 8 MiB in the second part
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}
    response = client.post("/dicomweb/studies", content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert response.json()["budget"] == "max_object_bytes"
    assert "part 2 is larger than" in response.json()["error"] and "nothing stored" in response.json()["error"]
    # The first, well-formed part was not stored either; no spool file is left.
    assert client.get("/dicomweb/studies", params={"PatientID": "LIMIT-OK"}).json() == []
    assert not server.temp_files()
    assert [e["budget"] for e in server.events("budget_exceeded")] == ["max_object_bytes"]
    # The server keeps serving: a part within the limit is stored.
    ok = f"--{BOUNDARY}\r\n\r\n".encode() + part10(synth.ct(patient_id="LIMIT-OK")) + f"\r\n--{BOUNDARY}--\r\n".encode()
    assert client.post("/dicomweb/studies", content=ok, headers=headers).status_code == 200


def test_an_oversized_single_part_body_is_refused(web: tuple[Server, httpx.Client]) -> None:
    server, client = web
    body = _stream(b"\0" * 132, 4 * LIMIT, b"")
    response = client.post("/dicomweb/studies", content=body, headers={"Content-Type": "application/dicom"})
    assert response.status_code == 413, response.text
    assert "max_object_bytes" in response.json()["error"]
    assert not server.temp_files()
