"""The rendering pipeline (pacsd.services.rendering) on real Part 10 files,
and the rendered routes' parameter parsing (pacsd.web.rendered)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacsd.domain.errors import InvalidQuery, NoSuchFrame
from pacsd.domain.outcomes import StoredInstance
from pacsd.services import rendering
from pacsd.services.rendering import PNG, Candidate, Rendering, Viewport, Window
from pacsd.testing import synth
from pacsd.web.rendered import frame_number, parameters
from pacsd.web.statuses import HttpError


def ct_file(tmp_path: Path, values: np.ndarray, name: str = "ct.dcm", **extra: object) -> Path:
    """A signed 16-bit CT whose pixels are *values* (stored = values, as slope 1 intercept 0 unless given)."""
    ds = synth.ct(pixel_bytes=2)
    ds.Rows, ds.Columns = values.shape[-2:]
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
    if values.ndim == 3:
        ds.NumberOfFrames = values.shape[0]
    ds.PixelData = values.astype("<i2").tobytes()
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return synth.write(ds, tmp_path / name)


def png(path: Path, frame: int = 1, **asked: object) -> np.ndarray:
    data = rendering.render(str(path), frame, Rendering(media_type=PNG, **asked))  # type: ignore[arg-type]
    return np.asarray(Image.open(BytesIO(data)))


def linear(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out independently of the module."""
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.rint(np.clip(y, 0, 255)).astype(np.uint8)


def test_modality_lut_then_the_objects_window(tmp_path: Path) -> None:
    stored = np.arange(-200, 200, dtype=np.int16).reshape(20, 20)
    path = ct_file(tmp_path, stored, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=0, WindowWidth=400)
    got = png(path)
    assert got.dtype == np.uint8 and got.shape == (20, 20)
    assert np.array_equal(got, linear(stored * 2.0 - 100, 0, 400))


def test_request_window_wins_and_its_functions(tmp_path: Path) -> None:
    stored = np.arange(-200, 200, dtype=np.int16).reshape(20, 20)
    path = ct_file(tmp_path, stored, WindowCenter=0, WindowWidth=400)
    assert np.array_equal(png(path, window=Window(50, 101)), linear(stored.astype(float), 50, 101))
    exact = png(path, window=Window(0, 200, "LINEAR_EXACT"))
    assert np.array_equal(exact, np.rint(np.clip(stored / 200 + 0.5, 0, 1) * 255).astype(np.uint8))
    sigmoid = png(path, window=Window(0, 100, "SIGMOID"))
    assert np.array_equal(sigmoid, np.rint(255 / (1 + np.exp(-4 * stored / 100))).astype(np.uint8))


def test_monochrome1_inverted_and_no_window_uses_the_range(tmp_path: Path) -> None:
    stored = np.array([[0, 100], [200, 300]], dtype=np.int16)
    path = ct_file(tmp_path, stored, PhotometricInterpretation="MONOCHROME1")
    assert png(path).tolist() == [[255, 170], [85, 0]]


def test_enhanced_per_frame_window_and_frame_range(tmp_path: Path) -> None:
    frames = np.stack([np.full((4, 4), 100, np.int16), np.full((4, 4), 100, np.int16)])
    per_frame = []
    for center in (100, 0):  # frame 1: mid grey; frame 2: above the window, white
        group = Dataset()
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 11
        group.FrameVOILUTSequence = Sequence([voi])
        per_frame.append(group)
    path = ct_file(tmp_path, frames, PerFrameFunctionalGroupsSequence=Sequence(per_frame))
    assert png(path, 1)[0, 0] == linear(np.array(100.0), 100, 11) and png(path, 2)[0, 0] == 255
    for frame in (0, 3):
        with pytest.raises(NoSuchFrame, match="2 frame"):
            rendering.render(str(path), frame, Rendering())


def test_no_pixel_data_is_no_such_frame(tmp_path: Path) -> None:
    ds = synth.ct()
    del ds.PixelData
    with pytest.raises(NoSuchFrame, match="no pixel data"):
        rendering.render(str(synth.write(ds, tmp_path / "x.dcm")), 1, Rendering())


def test_viewport_keeps_aspect_and_crops_the_source(tmp_path: Path) -> None:
    path = ct_file(tmp_path, np.zeros((20, 40), np.int16))
    assert png(path, viewport=Viewport(100, 100)).shape == (50, 100)  # scaled up to fit
    assert png(path, viewport=Viewport(10, 100)).shape == (5, 10)
    assert png(path, viewport=Viewport(8, 8, (0, 0, 10, 20))).shape == (8, 4)
    assert png(path, thumbnail=True, viewport=Viewport(10, 10)).shape == (64, 128)
    with pytest.raises(InvalidQuery, match="outside"):
        png(path, viewport=Viewport(8, 8, (40, 0, 1, 1)))


def test_jpeg_quality_changes_the_size(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(-1000, 1000, (64, 64)).astype(np.int16)
    path = ct_file(tmp_path, noise)
    low = rendering.render(str(path), 1, Rendering(quality=10))
    high = rendering.render(str(path), 1, Rendering(quality=95))
    assert low[:2] == high[:2] == b"\xff\xd8"
    assert len(low) < len(high)


def test_representative_is_the_middle_image_of_the_first_series() -> None:
    def cand(sop: str, series: str, series_no: int | None, no: int | None, cls: str = "1.2.840.10008.5.1.4.1.1.2"):
        return Candidate(StoredInstance(sop, cls, "1.2.840.10008.1.2.1", sop), series, series_no, no)

    sr = "1.2.840.10008.5.1.4.1.1.88.22"
    picked = rendering.representative(
        [
            cand("9", "s0", 0, 1, cls=sr),  # a report in series 0: passed over
            cand("1", "s2", 2, 1),
            cand("5", "s1", 1, 3),
            cand("3", "s1", 1, 1),
            cand("4", "s1", 1, 2),
            cand("6", "s1", 1, None),
        ]
    )
    assert picked.sop_uid == "5"  # series 1 sorted 3, 4, 5, 6: index 2
    assert rendering.representative([cand("9", "s0", 0, 1, cls=sr)]).sop_uid == "9"


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ([("quality", "0")], "quality"),
        ([("quality", "101")], "quality"),
        ([("quality", "x")], "quality"),
        ([("viewport", "10")], "viewport"),
        ([("viewport", "0,10")], "viewport"),
        ([("viewport", "10,-1")], "viewport"),
        ([("viewport", "10,10,0,0,0,5")], "viewport"),
        ([("window", "40")], "window"),
        ([("window", "40,0,linear")], "window"),
        ([("window", "40,400,cubic")], "window"),
        ([("window", "a,400")], "window"),
        ([("window", "40,nan")], "window"),
        ([("size", "1")], "size"),
        ([("quality", "5"), ("quality", "6")], "quality"),
    ],
)
def test_bad_parameters_are_named(query: list[tuple[str, str]], name: str) -> None:
    with pytest.raises(HttpError) as caught:
        parameters(query, "image/jpeg", thumbnail=False)
    assert caught.value.status == 400 and caught.value.fields["parameter"] == name


def test_good_parameters() -> None:
    asked = parameters(
        [("quality", "55"), ("viewport", "64,32"), ("window", "40,400,LINEAR-EXACT"), ("annotation", "patient")],
        PNG,
        thumbnail=False,
    )
    assert asked == Rendering(PNG, 55, Viewport(64, 32), Window(40, 400, "LINEAR_EXACT"))
    assert parameters([("viewport", "64,32")], "image/jpeg", thumbnail=True).viewport is None
    assert frame_number("3") == 3
    for bad in ("0x1", "1,2", "", "-1"):
        with pytest.raises(HttpError):
            frame_number(bad)


@pytest.mark.parametrize(
    ("name", "frame", "mode", "size"),
    [
        ("examples_palette.dcm", 1, "RGB", (800, 350)),  # PALETTE COLOR through its palette
        ("SC_rgb_rle_16bit.dcm", 1, "RGB", (100, 100)),  # 16 bits per sample, scaled down
        ("examples_ybr_color.dcm", 5, "RGB", (320, 240)),  # YBR_FULL_422 JPEG, 30 frames
        ("image_dfl.dcm", 1, "L", (512, 512)),  # deflated: decoded from the whole dataset
        ("liver_1frame.dcm", 1, "L", (512, 512)),  # 1 bit per pixel
        ("SC_rgb_jpeg.dcm", 1, "RGB", (256, 256)),  # a malformed offset table
    ],
)
def test_shipped_images_render(name: str, frame: int, mode: str, size: tuple[int, int]) -> None:
    path = get_testdata_file(name)
    assert path is not None
    got = Image.open(BytesIO(rendering.render(path, frame, Rendering(media_type=PNG))))
    assert (got.mode, got.size) == (mode, size)
    pixels = np.asarray(got)
    assert pixels.min() < pixels.max()  # not a blank image


def test_palette_colours_are_the_palettes() -> None:
    path = get_testdata_file("examples_palette.dcm")
    assert path is not None
    ds = pydicom.dcmread(path)
    index = int(ds.pixel_array[175, 400])
    red = ds.RedPaletteColorLookupTableData
    first = int(ds.RedPaletteColorLookupTableDescriptor[1])
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    expected = np.frombuffer(red, f"<u{bits // 8}")[index - first] * 255 / (2**bits - 1)
    got = np.asarray(Image.open(BytesIO(rendering.render(path, 1, Rendering(media_type=PNG)))))
    assert abs(int(got[175, 400, 0]) - round(float(expected))) <= 1
