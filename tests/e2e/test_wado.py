"""WADO-RS against a real `pacsd serve` holding objects stored by DCMTK
storescu, read back with dicomweb-client (and httpx where the test looks
at headers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless
from requests import HTTPError

from pacsd.testing import synth
from pacsd.testing.peers import free_port
from tests.e2e.conftest import Server, shipped

JLS_FILE = "MR_small_jpeg_ls_lossless.dcm"  # stored as JPEG-LS lossless
CT_FILE = "CT_small.dcm"  # Explicit VR LE, with private OB elements


@dataclass
class Held:
    server: Server
    base: str
    files: dict[str, Path]  # name -> the file storescu sent

    def ds(self, name: str) -> Dataset:
        return pydicom.dcmread(self.files[name])

    def uids(self, name: str) -> tuple[str, str, str]:
        ds = self.ds(name)
        return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def multiframe(study_uid: str, frames: int, syntax: str) -> Dataset:
    ds = synth.ct(study_uid=study_uid, pixel_bytes=2 * 16 * 16)
    ds.NumberOfFrames = frames
    ds.PixelData = os.urandom(ds.Rows * ds.Columns * 2 * frames)
    ds.PixelData = (np.frombuffer(ds.PixelData, "<u2") & 0x0FFF).astype("<u2").tobytes()  # 12 bits stored
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    synth.set_meta(ds, syntax)
    return ds


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Held]:
    work = tmp_path_factory.mktemp("wado")
    http = free_port()
    server = Server(work, extra_toml=f"[http]\nport = {http}\n").start()
    study = synth.new_uid()
    files = {"ct": shipped(CT_FILE), "jls": shipped(JLS_FILE)}
    two = synth.series(2, study_uid=study, pixel_bytes=2 * 32 * 32)
    for n, ds in enumerate(two):
        ds.PixelData = (np.frombuffer(ds.PixelData, "<u2") & 0x0FFF).astype("<u2").tobytes()
        files[f"plain{n}"] = synth.write(ds, work / f"plain{n}.dcm")
    for name, syntax in (("multi", ExplicitVRLittleEndian), ("multi_jls", JPEGLSLossless)):
        ds = multiframe(study, 3, syntax)
        ds.save_as(work / f"{name}.dcm", enforce_file_format=True)
        files[name] = work / f"{name}.dcm"
    compressed = [files["jls"], files["multi_jls"]]
    server.storescu(*(p for p in files.values() if p not in compressed))
    server.storescu(*compressed, extra=("-R", "-xt"))  # proposes JPEG-LS lossless: stored as such
    yield Held(server, f"http://127.0.0.1:{http}/dicomweb", files)
    server.stop()


@pytest.fixture
def client(held: Held) -> DICOMwebClient:
    return DICOMwebClient(held.base)


@pytest.fixture
def web(held: Held) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=held.base, timeout=60) as c:
        yield c


def same_pixels(got: Dataset, sent: Dataset) -> None:
    assert np.array_equal(got.pixel_array, sent.pixel_array)


def test_study_as_stored_and_in_explicit_vr(held: Held, client: DICOMwebClient) -> None:
    study = held.ds("plain0").StudyInstanceUID
    sent = {held.ds(n).SOPInstanceUID: held.ds(n) for n in ("plain0", "plain1", "multi", "multi_jls")}
    as_stored = client.retrieve_study(study, media_types=(("application/dicom", "*"),))
    assert {ds.SOPInstanceUID for ds in as_stored} == set(sent)
    for ds in as_stored:
        assert ds.file_meta.TransferSyntaxUID == sent[ds.SOPInstanceUID].file_meta.TransferSyntaxUID
        same_pixels(ds, sent[ds.SOPInstanceUID])
    explicit = client.retrieve_study(study, media_types=(("application/dicom", ExplicitVRLittleEndian),))
    assert len(explicit) == 4
    for ds in explicit:
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        same_pixels(ds, sent[ds.SOPInstanceUID])  # the JPEG-LS one decoded


def test_series_and_instance_converted(held: Held, client: DICOMwebClient) -> None:
    study, series, sop = held.uids("jls")
    [ds] = client.retrieve_series(study, series, media_types=(("application/dicom", ExplicitVRLittleEndian),))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    same_pixels(ds, held.ds("jls"))
    study, series, sop = held.uids("plain0")
    got = client.retrieve_instance(study, series, sop, media_types=(("application/dicom", JPEGLSLossless),))
    assert got.file_meta.TransferSyntaxUID == JPEGLSLossless
    same_pixels(got, held.ds("plain0"))


def test_instance_single_part_defaults_to_explicit_vr(held: Held, web: httpx.Client) -> None:
    study, series, sop = held.uids("jls")
    response = web.get(f"/studies/{study}/series/{series}/instances/{sop}", headers={"Accept": "application/dicom"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
    got = pydicom.dcmread(pydicom.filebase.DicomBytesIO(response.content))
    assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    same_pixels(got, held.ds("jls"))


def stored_without_padding(ds: Dataset) -> Dataset:
    if 0xFFFCFFFC in ds:
        del ds[0xFFFCFFFC]
    return ds


def test_metadata_equals_stored_and_bulk_data_uris_return_the_bytes(held: Held, client: DICOMwebClient) -> None:
    def fetch(tag: str, vr: str, uri: str) -> bytes:
        assert uri.startswith(held.base + "/studies/")
        [value] = client.retrieve_bulkdata(uri)
        return bytes(value)  # the client hands a bytearray, which pydicom reads as a list

    for name in ("ct", "jls"):
        study, series, sop = held.uids(name)
        sent = stored_without_padding(held.ds(name))
        for objects in (
            client.retrieve_instance_metadata(study, series, sop),
            client.retrieve_series_metadata(study, series),
            client.retrieve_study_metadata(study),
        ):
            [obj] = [
                o for o in (objects if isinstance(objects, list) else [objects]) if o["00080018"]["Value"] == [sop]
            ]
            assert "InlineBinary" not in str(obj)
            got = Dataset.from_json(obj, bulk_data_uri_handler=fetch)
            assert set(got.keys()) == set(sent.keys())
            for elem in sent:
                if elem.tag == 0x7FE00010 and name == "jls":  # encapsulated: one part per frame, as stored
                    continue
                assert got[elem.tag].value == elem.value, elem
    study, series, sop = held.uids("jls")
    frames = client.retrieve_bulkdata(
        f"{held.base}/studies/{study}/series/{series}/instances/{sop}/bulkdata/7FE00010", media_types=("image/jls",)
    )
    assert frames == [get_frame(held.ds("jls").PixelData, 0, number_of_frames=1)]
    [native] = client.retrieve_bulkdata(
        f"{held.base}/studies/{study}/series/{series}/instances/{sop}/bulkdata/7FE00010"
    )
    assert native == held.ds("jls").pixel_array.astype("<i2" if held.ds("jls").PixelRepresentation else "<u2").tobytes()


def test_metadata_etag_304_and_forwarded_base(held: Held, web: httpx.Client) -> None:
    study = held.ds("plain0").StudyInstanceUID
    first = web.get(f"/studies/{study}/metadata")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/dicom+json")
    assert len(first.json()) == 4
    etag = first.headers["etag"]
    again = web.get(f"/studies/{study}/metadata", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert web.get(f"/studies/{study}/metadata", headers={"If-None-Match": '"other"'}).status_code == 200
    for headers in (
        {"Forwarded": 'for=10.0.0.1;host="pacs.example.org";proto=https'},
        {"X-Forwarded-Host": "pacs.example.org", "X-Forwarded-Proto": "https"},
    ):
        proxied = web.get(f"/studies/{study}/metadata", headers=headers)
        assert proxied.headers["etag"] != etag  # another body: another tag
        uris = [o["7FE00010"]["BulkDataURI"] for o in proxied.json()]
        assert all(uri.startswith("https://pacs.example.org/dicomweb/studies/") for uri in uris), uris
    bogus = web.get(f"/studies/{study}/metadata", headers={"X-Forwarded-Host": 'evil"/x', "X-Forwarded-Proto": "ftp"})
    assert all(o["7FE00010"]["BulkDataURI"].startswith(held.base) for o in bogus.json())


def test_frames_native_and_compressed(held: Held, client: DICOMwebClient) -> None:
    sent = held.ds("multi")
    size = sent.Rows * sent.Columns * 2
    frames = client.retrieve_instance_frames(*held.uids("multi"), frame_numbers=[1, 3])
    assert frames == [sent.PixelData[:size], sent.PixelData[2 * size :]]
    jls = held.ds("multi_jls")
    as_stored = client.retrieve_instance_frames(*held.uids("multi_jls"), frame_numbers=[2], media_types=("image/jls",))
    assert as_stored == [get_frame(jls.PixelData, 1, number_of_frames=3)]
    decoded = client.retrieve_instance_frames(*held.uids("multi_jls"), frame_numbers=[3, 1])
    pixels = jls.pixel_array
    assert decoded == [pixels[2].astype("<u2").tobytes(), pixels[0].astype("<u2").tobytes()]


@pytest.mark.parametrize(
    ("path", "accept", "status", "names"),
    [
        ("/studies/1.2.3.999", None, 404, "1.2.3.999"),
        ("/studies/1.2.3.999/metadata", None, 404, "1.2.3.999"),
        ("/studies/1.2.x", None, 400, "Study Instance UID"),
        ("/studies/{study}/series/1..2/metadata", None, 400, "Series Instance UID"),
        ("/studies/{study}/series/{series}/instances/1.2.3.4", None, 404, "1.2.3.4"),
        ("/studies/{study}/series/{series}/instances/{sop}/frames/0", None, 400, "frame 0"),
        ("/studies/{study}/series/{series}/instances/{sop}/frames/1,4", None, 400, "frame 4"),
        ("/studies/{study}/series/{series}/instances/{sop}/frames/1,a", None, 400, "'a'"),
        ("/studies/{study}/series/{series}/instances/{sop}/frames/1", "multipart/related; type=image/jls", 406, "jls"),
        ("/studies/{study}/series/{series}/instances/{sop}/bulkdata/00100010", None, 404, "(0010,0010)"),
        ("/studies/{study}/series/{series}/instances/{sop}/bulkdata/xyz", None, 404, "xyz"),
        ("/studies/{study}", "image/png", 406, "application/dicom"),
        ("/studies/{study}", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4', 406, "1.2.3.4"),
        ("/studies/{study}/metadata", "application/xml", 406, "dicom+json"),
    ],
)
def test_bad_requests_named_and_server_serves_on(
    held: Held, web: httpx.Client, path: str, accept: str | None, status: int, names: str
) -> None:
    study, series, sop = held.uids("multi")
    headers = {"Accept": accept} if accept else {}
    response = web.get(path.format(study=study, series=series, sop=sop), headers=headers)
    assert response.status_code == status, response.text
    assert names in response.json()["error"]
    assert web.get(f"/studies/{study}/series/{series}/instances/{sop}/metadata").status_code == 200


def test_unconvertible_instance_refuses_the_whole_study_before_any_byte(held: Held, client: DICOMwebClient) -> None:
    # 2.25.x is no transfer syntax pacsd can encode: every instance is refused, 406 names the first.
    study = held.ds("plain0").StudyInstanceUID
    with pytest.raises(HTTPError) as raised:
        client.retrieve_study(study, media_types=(("application/dicom", "1.2.840.10008.1.2.4.100"),))
    assert raised.value.response.status_code == 406
    assert "MPEG2" in raised.value.response.json()["error"] or "cannot" in raised.value.response.json()["error"]
