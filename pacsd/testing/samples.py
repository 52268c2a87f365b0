"""pydicom's own test files as transcoding originals, and a converted
dataset read back as a recipient would: shared by the unit and the
end-to-end transcoding tests."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

# Compressed originals (lossless unless marked False).
ORIGINALS: list[tuple[str, bool]] = [
    ("MR_small_RLE.dcm", True),  # RLE, 16-bit signed
    ("SC_rgb_rle_16bit_2frame.dcm", True),  # RLE, RGB, 16-bit, two frames
    ("rtdose_rle.dcm", True),  # RLE, 32-bit, 15 frames
    ("MR_small_jpeg_ls_lossless.dcm", True),  # JPEG-LS lossless
    ("JPEGLSNearLossless_16.dcm", False),  # JPEG-LS near-lossless, 16-bit
    ("SC_rgb_jls_lossy_sample.dcm", False),  # JPEG-LS near-lossless, RGB
    ("MR_small_jp2klossless.dcm", True),  # JPEG 2000 lossless, signed
    ("examples_jpeg2k.dcm", True),  # JPEG 2000 lossless, YBR_RCT colour
    ("JPEG2000.dcm", False),  # JPEG 2000 lossy, signed
    ("SC_rgb_jpeg_gdcm.dcm", True),  # JPEG Lossless SV1, RGB
    ("JPGExtended.dcm", False),  # JPEG Extended, 12-bit
    ("SC_rgb_jpeg_dcmtk.dcm", False),  # JPEG Baseline, YBR_FULL
    ("SC_rgb_dcmtk_+eb+cy+s2.dcm", False),  # JPEG Baseline, YBR_FULL_422
    ("examples_ybr_color.dcm", False),  # JPEG Baseline, YBR_FULL_422, 30 frames
    ("image_dfl.dcm", True),  # deflated
]


def sample(name: str) -> Path:
    """The path of pydicom's test file *name* (installed with pydicom)."""
    found = get_testdata_file(name, download=False)
    assert found is not None, f"pydicom test file {name} missing"
    return Path(str(found))


def decoded(data: bytes, syntax: str) -> Dataset:
    """A converted dataset (no file meta) read back as a recipient would."""
    uid = UID(syntax)
    ds = read_dataset(BytesIO(data), uid.is_implicit_VR, uid.is_little_endian)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return ds
