"""WADO-RS /rendered and /thumbnail against a real `pacsd serve` holding
objects stored by DCMTK storescu, read with dicomweb-client and httpx; the
images are decoded with PIL and compared with grey levels predicted from
the stored values by PS3.3's window formula."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.dataset import Dataset

from pacsd.testing import synth
from pacsd.testing.peers import free_port
from tests.e2e.conftest import Server, shipped

RGB_FILE = "examples_rgb_color.dcm"  # RGB, Explicit VR LE, 240 x 320
YBR_FILE = "SC_rgb_dcmtk_+eb+cy+np.dcm"  # YBR_FULL_422 JPEG baseline, 100 x 100, ten colour bands
# (row, colour) of the YBR file's bands, as DCMTK's original RGB test image has them.
BANDS = [(5, (255, 0, 0)), (25, (0, 255, 0)), (45, (0, 0, 255)), (65, (0, 0, 0)), (75, (64, 64, 64)), (95, (255,) * 3)]
CENTER, WIDTH = 40, 400  # the CT's own window, in Hounsfield units
INTERCEPT = -1024


@dataclass
class Held:
    server: Server
    base: str
    files: dict[str, Path]

    def ds(self, name: str) -> Dataset:
        return pydicom.dcmread(self.files[name])

    def path(self, name: str) -> str:
        ds = self.ds(name)
        return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def predicted(hu: np.ndarray, center: float = CENTER, width: float = WIDTH) -> np.ndarray:
    y = ((hu - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.rint(np.clip(y, 0, 255)).astype(np.uint8)


def ct(study: str, series: str, stored: np.ndarray, number: int, series_number: int = 1, **extra: object) -> Dataset:
    ds = synth.ct(study_uid=study, series_uid=series, instance_number=number, pixel_bytes=2)
    ds.SeriesNumber = series_number
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = INTERCEPT, 1
    ds.WindowCenter, ds.WindowWidth = CENTER, WIDTH
    ds.PixelData = stored.astype("<i2").tobytes()
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def fresh(name: str, work: Path) -> Path:
    """A pydicom test file under new UIDs (its pixel data as stored)."""
    ds = pydicom.dcmread(shipped(name))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (synth.new_uid() for _ in range(3))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(work / name)
    return work / name


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Held]:
    work = tmp_path_factory.mktemp("rendered")
    http = free_port()
    server = Server(work, extra_toml=f"[http]\nport = {http}\n").start()
    study, series = synth.new_uid(), synth.new_uid()
    gradient = (np.arange(48 * 64).reshape(48, 64) - 1200).astype(np.int16)  # HU -2224 .. 848: every grey level
    objects = {
        # Series 1: three flat images, instance 2 the middle one (the study's representative).
        "ct1": ct(study, series, np.full((48, 64), 1000), 1),
        "ct2": ct(study, series, gradient + 1024, 2),  # stored = HU + 1024
        "ct3": ct(study, series, np.full((48, 64), 1100), 3),
        "mono1": ct(study, synth.new_uid(), np.array([[0, 100], [200, 300]]), 1, series_number=2),
        "multi": ct(
            synth.new_uid(),
            synth.new_uid(),
            np.stack([np.full((8, 8), 1024 + hu) for hu in (-160, 40, 240)]),
            1,
            NumberOfFrames=3,
        ),
        "nopixels": ct(synth.new_uid(), synth.new_uid(), np.zeros((2, 2)), 1),
    }
    mono1 = objects["mono1"]
    mono1.PhotometricInterpretation = "MONOCHROME1"
    del mono1.WindowCenter, mono1.WindowWidth
    del objects["nopixels"].PixelData
    files = {name: synth.write(ds, work / f"{name}.dcm") for name, ds in objects.items()}
    files["rgb"] = fresh(RGB_FILE, work)
    files["ybr"] = fresh(YBR_FILE, work)
    server.storescu(*(p for n, p in files.items() if n != "ybr"))
    server.storescu(files["ybr"], extra=("-R", "-xy"))  # proposes JPEG baseline: stored as such
    yield Held(server, f"http://127.0.0.1:{http}/dicomweb", files)
    server.stop()


@pytest.fixture
def web(held: Held) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=held.base, timeout=60) as c:
        yield c


def image(response: httpx.Response, kind: str = "image/png") -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == kind
    return Image.open(BytesIO(response.content))


def test_ct_window_png_exact_and_jpeg_close(held: Held, web: httpx.Client) -> None:
    assert held.ds("ybr").file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    hu = held.ds("ct2").pixel_array.astype(float) + INTERCEPT
    got = image(web.get(held.path("ct2") + "/rendered", headers={"Accept": "image/png"}))
    assert got.mode == "L" and got.size == (64, 48)
    assert np.array_equal(np.asarray(got), predicted(hu))
    jpeg = image(web.get(held.path("ct2") + "/rendered"), "image/jpeg")  # no Accept: JPEG
    assert jpeg.format == "JPEG" and jpeg.mode == "L"
    assert np.abs(np.asarray(jpeg).astype(int) - predicted(hu)).mean() < 3
    windowed = image(web.get(held.path("ct2") + "/rendered?window=-500,1001,linear", headers={"Accept": "image/png"}))
    assert np.array_equal(np.asarray(windowed), predicted(hu, -500, 1001))


def test_monochrome1_inverted(held: Held, web: httpx.Client) -> None:
    got = image(web.get(held.path("mono1") + "/rendered", headers={"Accept": "image/png"}))
    assert np.asarray(got).tolist() == [[255, 170], [85, 0]]  # no window: the range, white at the minimum


def test_rgb_and_ybr_jpeg_colour(held: Held, client: DICOMwebClient) -> None:
    study, series, sop = (held.ds("rgb")[k].value for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    png = Image.open(BytesIO(client.retrieve_instance_rendered(study, series, sop, media_types=("image/png",))))
    assert png.mode == "RGB" and png.size == (320, 240)
    assert np.array_equal(np.asarray(png), held.ds("rgb").pixel_array)
    ybr = held.ds("ybr")
    data = client.retrieve_instance_rendered(
        ybr.StudyInstanceUID, ybr.SeriesInstanceUID, ybr.SOPInstanceUID, media_types=("image/png",)
    )
    pixels = np.asarray(Image.open(BytesIO(data))).astype(int)
    assert pixels.shape == (100, 100, 3)
    for row, colour in BANDS:
        assert np.abs(pixels[row, 50] - np.array(colour)).max() <= 8, (row, pixels[row, 50])


@pytest.fixture
def client(held: Held) -> DICOMwebClient:
    return DICOMwebClient(held.base)


def test_frames_of_a_multiframe(held: Held, web: httpx.Client, client: DICOMwebClient) -> None:
    ds = held.ds("multi")
    for number, hu in ((1, -160), (2, 40), (3, 240)):
        data = client.retrieve_instance_frames_rendered(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [number], media_types=("image/png",)
        )
        got = np.asarray(Image.open(BytesIO(data)))
        assert got.shape == (8, 8) and set(got.flat) == {predicted(np.array(float(hu)))}
    first = image(web.get(held.path("multi") + "/rendered", headers={"Accept": "image/png"}))
    assert set(np.asarray(first).flat) == {predicted(np.array(-160.0))}  # an instance: its first frame
    for frame in ("0", "4", "1,2", "x"):
        response = web.get(held.path("multi") + f"/frames/{frame}/rendered")
        assert response.status_code == 400, (frame, response.text)
        assert "frame" in response.json()["error"]


def test_study_and_series_show_the_middle_image_of_the_first_series(held: Held, web: httpx.Client) -> None:
    ds = held.ds("ct2")
    middle = predicted(ds.pixel_array.astype(float) + INTERCEPT)
    for path in (f"/studies/{ds.StudyInstanceUID}", f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"):
        got = image(web.get(path + "/rendered", headers={"Accept": "image/png"}))
        assert np.array_equal(np.asarray(got), middle), path
        thumb = image(web.get(path + "/thumbnail"), "image/jpeg")
        assert thumb.size == (128, 96)


def test_viewport_quality_and_thumbnail(held: Held, web: httpx.Client) -> None:
    path = held.path("rgb")  # 320 x 240
    assert image(web.get(path + "/rendered?viewport=100,100"), "image/jpeg").size == (100, 75)
    assert image(web.get(path + "/rendered?viewport=640,100"), "image/jpeg").size == (133, 100)
    assert image(web.get(path + "/rendered?viewport=100,100,0,0,120,240"), "image/jpeg").size == (50, 100)
    sizes = [len(web.get(path + f"/rendered?quality={q}").content) for q in (5, 50, 100)]
    assert sizes[0] < sizes[1] < sizes[2]
    thumb = image(web.get(path + "/thumbnail?viewport=300,300"), "image/jpeg")  # the viewport is ignored
    assert thumb.size == (128, 96)
    frame = image(web.get(held.path("multi") + "/frames/2/thumbnail", headers={"Accept": "image/png"}))
    assert frame.size == (128, 128) and set(np.asarray(frame).flat) == {predicted(np.array(40.0))}


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("image/*", "image/jpeg"),
        ("*/*", "image/jpeg"),
        ("image/png, image/jpeg;q=0.5", "image/png"),
        (None, "image/jpeg"),
    ],
)
def test_accept(held: Held, web: httpx.Client, accept: str | None, kind: str) -> None:
    headers = {"Accept": accept} if accept else {}
    assert image(web.get(held.path("ct1") + "/rendered", headers=headers), kind).format in ("PNG", "JPEG")


def test_refusals_and_the_server_serves_on(held: Held, web: httpx.Client) -> None:
    ct1 = held.ds("ct1")
    unknown = synth.new_uid()
    cases = [
        (held.path("ct1") + "/rendered", {"Accept": "image/gif"}, 406, "image/jpeg"),
        (held.path("ct1") + "/rendered", {"Accept": "application/dicom"}, 406, "image/png"),
        (f"/studies/{unknown}/rendered", {}, 404, "no such study"),
        (f"/studies/{ct1.StudyInstanceUID}/series/{unknown}/thumbnail", {}, 404, "no such series"),
        (f"/studies/{ct1.StudyInstanceUID}/series/{ct1.SeriesInstanceUID}/instances/{unknown}/rendered", {}, 404, ""),
        ("/studies/1.2.x/rendered", {}, 400, "not a valid UID"),
        (held.path("nopixels") + "/rendered", {}, 400, "no pixel data"),
        (held.path("ct1") + "/rendered?quality=0", {}, 400, "quality"),
        (held.path("ct1") + "/rendered?viewport=10", {}, 400, "viewport"),
        (held.path("ct1") + "/rendered?viewport=10,10,64,0,5,5", {}, 400, "outside"),
        (held.path("ct1") + "/rendered?window=40,0,linear", {}, 400, "window"),
        (held.path("ct1") + "/rendered?size=3", {}, 400, "size"),
    ]
    for path, headers, status, word in cases:
        response = web.get(path, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert word in response.json()["error"], (path, response.json())
    assert image(web.get(held.path("ct1") + "/rendered"), "image/jpeg").size == (64, 48)
    refused = [e for e in held.server.events("http_request") if e.get("status") in (400, 404, 406)]
    assert len(refused) >= len(cases)
