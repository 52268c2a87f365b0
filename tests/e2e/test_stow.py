"""STOW-RS over real HTTP (dicomweb-client, httpx) against a real
`pacsd serve`, and what was stored read back over DIMSE (DCMTK findscu,
movescu, getscu)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSNearLossless

from pacsd.domain.part10 import stored_dataset
from pacsd.testing import synth
from pacsd.testing.peers import free_port
from tests.e2e.conftest import Server, StoreSCP, shipped

STUDIES = "/dicomweb/studies"
BOUNDARY = "stow-test-boundary"
RELATED = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'


class Setup:
    def __init__(self, server: Server, http_port: int, dest: StoreSCP) -> None:
        self.server = server
        self.http_port = http_port
        self.dest = dest
        self.url = f"http://127.0.0.1:{http_port}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("stow")
    dest = StoreSCP(work, extra=("+xa",))
    http_port = free_port()
    server = Server(work, extra_toml=f"[http]\nport = {http_port}\n" + dest.toml())
    try:
        server.start()
        yield Setup(server, http_port, dest)
    finally:
        server.stop()
        dest.stop()


@pytest.fixture
def web(setup: Setup) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=setup.url, timeout=60) as client:
        yield client
    # Whatever the test sent, the server still stores what is well formed.
    with httpx.Client(base_url=setup.url, timeout=60) as client:
        ds = synth.ct(patient_id="STILL-SERVING")
        response = stow(client, [part10(ds)])
        assert response.status_code == 200, response.text
    assert not setup.server.temp_files(), "a spool file was left behind"


# -- helpers -------------------------------------------------------------------


def part10(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    synth.set_meta(ds, transfer_syntax)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def related(
    parts: Iterable[bytes],
    *,
    boundary: str = BOUNDARY,
    headers: str = "Content-Type: application/dicom\r\n",
    preamble: bytes = b"",
    close: bool = True,
) -> bytes:
    body = preamble
    for data in parts:
        body += f"--{boundary}\r\n{headers}\r\n".encode() + data + b"\r\n"
    return body + (f"--{boundary}--\r\n".encode() if close else b"")


def stow(
    web: httpx.Client,
    parts: list[bytes],
    path: str = STUDIES,
    content_type: str = RELATED,
    headers: dict[str, str] | None = None,
    content: bytes | Iterator[bytes] | None = None,
) -> httpx.Response:
    body = related(parts) if content is None else content
    return web.post(path, content=body, headers={"Content-Type": content_type, **(headers or {})})


def tag(obj: dict[str, Any], key: str) -> Any:
    return obj.get(key, {}).get("Value", [None])[0]


def referenced(response: httpx.Response) -> list[dict[str, Any]]:
    return response.json().get("00081199", {}).get("Value", [])  # type: ignore[no-any-return]


def failed(response: httpx.Response) -> list[dict[str, Any]]:
    return response.json().get("00081198", {}).get("Value", [])  # type: ignore[no-any-return]


def stored_sops(server: Server) -> set[str]:
    return {path.stem for path in server.files()}


def find(server: Server, level: str, returned: str, **keys: str) -> list[Dataset]:
    """C-FIND (DCMTK findscu, study root) at *level*, asking for *returned*."""
    asked = [f"QueryRetrieveLevel={level}", returned, *(f"{k}={v}" for k, v in keys.items())]
    responses, output = server.findscu("-S", *asked)
    assert "Received Final Find Response (Success)" in output, output
    return responses


# -- dicomweb-client, then DIMSE ----------------------------------------------------


def test_dicomweb_client_store_comes_back_through_find_move_and_get(setup: Setup, tmp_path: Path) -> None:
    ct = synth.ct(patient_id="STOW-DWC", patient_name="Web^Client")
    jls = pydicom.dcmread(shipped("JPEGLSNearLossless_16.dcm"))
    jls.PatientID, jls.StudyInstanceUID = "STOW-DWC", ct.StudyInstanceUID
    jls.SeriesInstanceUID, jls.SOPInstanceUID = synth.new_uid(), synth.new_uid()
    jls.file_meta.MediaStorageSOPInstanceUID = jls.SOPInstanceUID
    synth.set_meta(ct, ExplicitVRLittleEndian)

    client = DICOMwebClient(f"{setup.url}/dicomweb")
    answer = client.store_instances([ct, jls])

    refs = answer.ReferencedSOPSequence
    assert {r.ReferencedSOPInstanceUID for r in refs} == {ct.SOPInstanceUID, jls.SOPInstanceUID}
    assert "FailedSOPSequence" not in answer
    # dicomweb-client sends "Host: 127.0.0.1", without the port: a client that
    # reached our own address did so on our port, which the URLs then name.
    assert answer.RetrieveURL == f"{setup.url}/dicomweb/studies/{ct.StudyInstanceUID}"
    by_sop = {r.ReferencedSOPInstanceUID: r for r in refs}
    assert by_sop[jls.SOPInstanceUID].RetrieveURL == (
        f"{setup.url}/dicomweb/studies/{ct.StudyInstanceUID}/series/{jls.SeriesInstanceUID}"
        f"/instances/{jls.SOPInstanceUID}"
    )
    assert by_sop[ct.SOPInstanceUID].ReferencedSOPClassUID == ct.SOPClassUID

    series = find(setup.server, "SERIES", "SeriesInstanceUID", StudyInstanceUID=ct.StudyInstanceUID)
    assert {str(r.SeriesInstanceUID) for r in series} == {ct.SeriesInstanceUID, jls.SeriesInstanceUID}
    images = find(setup.server, "IMAGE", "SOPInstanceUID", StudyInstanceUID=ct.StudyInstanceUID,
                  SeriesInstanceUID=jls.SeriesInstanceUID)  # fmt: skip
    assert [str(r.SOPInstanceUID) for r in images] == [jls.SOPInstanceUID]

    for path in setup.dest.out.iterdir():
        path.unlink()
    moved = setup.server.retrieve(
        "movescu", "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ct.StudyInstanceUID}",
        f"SeriesInstanceUID={ct.SeriesInstanceUID}", f"SOPInstanceUID={ct.SOPInstanceUID}", extra=("-aem", "DEST"),
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    [back] = setup.dest.received()
    assert back.SOPInstanceUID == ct.SOPInstanceUID and back.PixelData == ct.PixelData

    got = setup.server.retrieve(
        "getscu", "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ct.StudyInstanceUID}",
        f"SeriesInstanceUID={jls.SeriesInstanceUID}", f"SOPInstanceUID={jls.SOPInstanceUID}", extra=("+xu",),
        out=tmp_path,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    [path] = [p for p in tmp_path.iterdir() if p.is_file()]
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == JPEGLSNearLossless  # stored as received, sent as stored
    assert back.PixelData == jls.PixelData


# -- the body variants a client may send ------------------------------------------


def _chunked(body: bytes, size: int = 7000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


VARIANTS: dict[str, Any] = {
    "quoted-boundary": {},
    "unquoted-boundary": {"content_type": f"multipart/related; type=application/dicom; boundary={BOUNDARY}"},
    "boundary-first, no type": {"content_type": f"multipart/related; boundary={BOUNDARY}"},
    "leading-crlf": {"preamble": b"\r\n"},
    "chunked": {"chunked": True},
    "no-part-content-type": {"headers": ""},
    "part-transfer-syntax": {"headers": 'Content-Type: application/dicom; transfer-syntax="1.2.840.10008.1.2.1"\r\n'},
    "part-content-length": {"length": True},
}


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_multipart_variants_are_stored(setup: Setup, web: httpx.Client, variant: str) -> None:
    options = VARIANTS[variant]
    images = synth.series(2, patient_id=f"STOW-{variant}")
    data = [part10(ds) for ds in images]
    if options.get("length"):  # each part with its own Content-Length
        body = (
            b"".join(
                f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\nContent-Length: {len(d)}\r\n\r\n".encode()
                + d
                + b"\r\n"
                for d in data
            )
            + f"--{BOUNDARY}--\r\n".encode()
        )
    else:
        body = related(data, headers=options.get("headers", "Content-Type: application/dicom\r\n"),
                       preamble=options.get("preamble", b""))  # fmt: skip
    content = _chunked(body) if options.get("chunked") else body
    response = stow(web, [], content_type=options.get("content_type", RELATED), content=content)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    assert [tag(r, "00081155") for r in referenced(response)] == [ds.SOPInstanceUID for ds in images]
    assert {ds.SOPInstanceUID for ds in images} <= stored_sops(setup.server)


def test_single_part_application_dicom(setup: Setup, web: httpx.Client) -> None:
    ds = synth.ct(patient_id="STOW-SINGLE")
    response = stow(web, [], content_type="application/dicom", content=part10(ds))
    assert response.status_code == 200, response.text
    [ref] = referenced(response)
    assert tag(ref, "00081155") == ds.SOPInstanceUID
    assert ds.SOPInstanceUID in stored_sops(setup.server)


def test_a_part_without_preamble_and_an_empty_single_body(setup: Setup, web: httpx.Client) -> None:
    ds = synth.ct(patient_id="STOW-NOPREAMBLE")
    response = stow(web, [part10(ds)[132:]])  # file meta first, as pydicom writes a dataset without a preamble
    assert response.status_code == 200, response.text
    assert ds.SOPInstanceUID in stored_sops(setup.server)
    response = stow(web, [], content_type="application/dicom", content=b"")
    assert response.status_code == 400
    assert "empty body" in response.json()["error"]


def test_a_3_mb_part_is_spooled_and_stored_byte_for_byte(setup: Setup, web: httpx.Client) -> None:
    big = synth.ct(patient_id="STOW-BIG", pixel_bytes=3 * 1024 * 1024)
    small = synth.ct(patient_id="STOW-BIG", study_uid=big.StudyInstanceUID)
    response = stow(web, [part10(big), part10(small)], content=_chunked(related([part10(big), part10(small)])))
    assert response.status_code == 200, response.text
    [path] = [p for p in setup.server.files() if p.stem == big.SOPInstanceUID]
    sent = part10(big)
    assert stored_dataset(path) == sent[len(sent) - len(stored_dataset(path)) :]
    assert pydicom.dcmread(path).PixelData == big.PixelData
    assert not setup.server.temp_files()


def test_a_large_body_does_not_sit_in_memory(setup: Setup, web: httpx.Client) -> None:
    size = 96 * 1024 * 1024
    big = synth.ct(patient_id="STOW-HUGE", pixel_bytes=1024)
    big.PixelData = b"\x01\x02" * (size // 2)
    big.Rows, big.Columns, big.NumberOfFrames = 1024, 1024, size // (2 * 1024 * 1024)
    data = related([part10(big)])
    before = setup.server.peak_rss()
    response = stow(web, [], content=_chunked(data, 1 << 20))
    assert response.status_code == 200, response.text
    del data
    grew = setup.server.peak_rss() - before
    print(f"\nSTOW of a {size >> 20} MiB part: server peak RSS grew by {grew / (1 << 20):.1f} MiB")
    assert grew < size // 4


def test_retrieve_urls_honour_forwarded_headers(web: httpx.Client) -> None:
    ds = synth.ct(patient_id="STOW-PROXY")
    response = stow(web, [part10(ds)], headers={"Forwarded": 'for=10.0.0.1;host="pacs.example.org";proto=https'})
    assert tag(response.json(), "00081190") == f"https://pacs.example.org/dicomweb/studies/{ds.StudyInstanceUID}"
    ds = synth.ct(patient_id="STOW-PROXY")
    response = stow(
        web, [part10(ds)], headers={"X-Forwarded-Host": "viewer.example.org:8443", "X-Forwarded-Proto": "https"}
    )
    [ref] = referenced(response)
    assert tag(ref, "00081190").startswith("https://viewer.example.org:8443/dicomweb/studies/")
    ds = synth.ct(patient_id="STOW-PROXY")  # not a host: ignored, the request's own is used
    response = stow(web, [part10(ds)], headers={"X-Forwarded-Host": "evil/<script>"})
    assert tag(response.json(), "00081190").startswith(str(web.base_url).rstrip("/") + "/dicomweb/studies/")


def test_application_json_is_answered_when_asked(web: httpx.Client) -> None:
    response = stow(web, [part10(synth.ct(patient_id="STOW-JSON"))], headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


# -- bad input: a clear status, nothing stored, the server serves on --------------


@pytest.mark.parametrize(
    ("content_type", "says"),
    [
        ("application/json", "application/json"),
        ("", "no Content-Type"),
        (f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}', "not supported"),
        (f'multipart/related; type="application/dicom+xml"; boundary={BOUNDARY}', "not supported"),
    ],
)
def test_other_content_types_are_415(setup: Setup, web: httpx.Client, content_type: str, says: str) -> None:
    ds = synth.ct(patient_id="STOW-415")
    response = stow(web, [part10(ds)], content_type=content_type)
    assert response.status_code == 415, response.text
    assert says in response.json()["error"]
    assert ds.SOPInstanceUID not in stored_sops(setup.server)


def test_truncated_multipart_is_400_and_stores_nothing(setup: Setup, web: httpx.Client) -> None:
    images = synth.series(3, patient_id="STOW-TRUNC")
    body = related([part10(ds) for ds in images], close=False)[:-5000]  # cut inside the third part
    response = stow(web, [], content=_chunked(body))
    assert response.status_code == 400, response.text
    assert "truncated" in response.json()["error"] and "nothing stored" in response.json()["error"]
    assert not find(setup.server, "STUDY", "StudyInstanceUID", StudyInstanceUID=images[0].StudyInstanceUID)
    assert not {ds.SOPInstanceUID for ds in images} & stored_sops(setup.server)
    assert setup.server.events("stow_malformed")


def test_malformed_boundary_is_400(web: httpx.Client) -> None:
    response = stow(web, [part10(synth.ct())], content_type='multipart/related; type="application/dicom"')
    assert response.status_code == 400
    assert "boundary" in response.json()["error"]


def test_a_part_that_is_not_dicom(setup: Setup, web: httpx.Client) -> None:
    response = stow(web, [b"this is not a DICOM file at all" * 10])
    assert response.status_code == 409, response.text
    [failure] = failed(response)
    assert tag(failure, "00081197") == 0xC000
    assert "not a DICOM Part 10 file" in tag(failure, "00000902")
    assert not referenced(response)

    good = synth.ct(patient_id="STOW-MIXED")
    response = stow(web, [part10(good), b"\0" * 200])
    assert response.status_code == 202, response.text
    assert [tag(r, "00081155") for r in referenced(response)] == [good.SOPInstanceUID]
    [failure] = failed(response)
    assert tag(failure, "00081197") == 0xC000
    refused = setup.server.events("stow_refused")[-1]
    assert refused["part"] == 2 and refused["failure_reason"] == "0xC000" and "DICM" in refused["reason"]


def test_a_part_of_another_media_type_fails_alone(web: httpx.Client) -> None:
    good = synth.ct(patient_id="STOW-TYPES")
    body = related([part10(good)]).replace(f"--{BOUNDARY}--\r\n".encode(), b"") + (
        f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{BOUNDARY}--\r\n".encode()
    )
    response = stow(web, [], content=body)
    assert response.status_code == 202, response.text
    [failure] = failed(response)
    assert "text/plain" in tag(failure, "00000902")


def test_a_study_uid_in_the_path_the_instance_does_not_match(setup: Setup, web: httpx.Client) -> None:
    ds = synth.ct(patient_id="STOW-PATH")
    other = synth.new_uid()
    response = stow(web, [part10(ds)], path=f"{STUDIES}/{other}")
    assert response.status_code == 409, response.text
    [failure] = failed(response)
    assert tag(failure, "00081197") == 0xA901
    assert tag(failure, "00081155") == ds.SOPInstanceUID
    comment = tag(failure, "00000902")
    assert ds.StudyInstanceUID in comment and other in comment
    assert tag(response.json(), "00081190") == f"{web.base_url}{STUDIES}/{other}".replace("//dicomweb", "/dicomweb")
    assert ds.SOPInstanceUID not in stored_sops(setup.server)

    response = stow(web, [part10(ds)], path=f"{STUDIES}/{ds.StudyInstanceUID}")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("bad", ["1.2.abc", "1..2", "1.2.", "1." + "2" * 70])
def test_an_invalid_uid_in_the_path_is_400(setup: Setup, web: httpx.Client, bad: str) -> None:
    ds = synth.ct(patient_id="STOW-BADUID")
    response = stow(web, [part10(ds)], path=f"{STUDIES}/{bad}")
    assert response.status_code == 400, response.text
    assert "Study Instance UID" in response.json()["error"]
    assert ds.SOPInstanceUID not in stored_sops(setup.server)


def test_an_unsupported_accept_is_406(setup: Setup, web: httpx.Client) -> None:
    ds = synth.ct(patient_id="STOW-406")
    response = stow(web, [part10(ds)], headers={"Accept": "application/dicom+xml"})
    assert response.status_code == 406, response.text
    assert "application/dicom+json" in response.json()["error"]
    assert ds.SOPInstanceUID not in stored_sops(setup.server)


def test_duplicates_identical_succeed_different_content_fails(web: httpx.Client) -> None:
    ds = synth.ct(patient_id="STOW-DUP")
    first = part10(ds)
    assert stow(web, [first]).status_code == 200
    assert stow(web, [first]).status_code == 200  # the same bytes again: nothing changes
    ds.PatientName = "Changed^Name"
    response = stow(web, [part10(ds)])
    assert response.status_code == 409, response.text
    [failure] = failed(response)
    assert tag(failure, "00081197") == 0xB006  # C-STORE's code for it
    assert "already stored with different content" in tag(failure, "00000902")


def test_an_identity_conflict_fails_with_the_c_store_code(setup: Setup, web: httpx.Client) -> None:
    first = synth.ct(patient_id="STOW-ID-A")
    assert stow(web, [part10(first)]).status_code == 200
    intruder = synth.ct(patient_id="STOW-ID-B", study_uid=first.StudyInstanceUID)
    response = stow(web, [part10(intruder)])
    assert response.status_code == 409, response.text
    [failure] = failed(response)
    assert tag(failure, "00081197") == 0xC010
    assert "STOW-ID-A" in tag(failure, "00000902")
    assert intruder.SOPInstanceUID not in stored_sops(setup.server)


def test_stored_with_index_values_ignored_is_a_warning(setup: Setup, web: httpx.Client) -> None:
    ds = synth.ct(patient_id="STOW-WARN")
    ds.InstanceNumber = "99999999999"  # past what the index holds: stored, left out of the index
    response = stow(web, [part10(ds)])
    assert response.status_code == 202, response.text
    [ref] = referenced(response)
    assert tag(ref, "00081196") == 0xB010
    assert "InstanceNumber" in tag(ref, "00000902")
    assert not failed(response)
    assert ds.SOPInstanceUID in stored_sops(setup.server)
    assert setup.server.events("stow_stored")[-1]["warning_reason"] == "0xB010"
