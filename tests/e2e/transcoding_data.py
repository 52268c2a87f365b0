"""Objects for the transcoding tests: pydicom's compressed test files under
fresh UIDs (pixel data untouched), a synthetic 16-bit CT, a truncated frame,
and what pydicom itself makes of each original."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import decompress
from pydicom.uid import UID, generate_uid

from pacsd.testing import synth


@dataclass(frozen=True)
class Original:
    """A file as stored in pacsd, and what pydicom decodes from it."""

    path: Path
    syntax: UID
    sop_class: UID
    study: str
    sop: str
    pixels: NDArray[np.generic]
    photometric: str  # what pydicom reports once it has decoded the pixels
    lossless: bool


def relabelled(source: Path, out: Path, lossless: bool = True, study: str | None = None) -> Original:
    """*source* under a fresh instance and series, of *study* or a fresh
    one, its pixel data bytes and transfer syntax untouched; written to *out*."""
    ds = dcmread(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study or generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = ds.get("PatientID") or "TRANSCODE"
    ds.save_as(out, enforce_file_format=True)
    return describe(out, lossless)


def describe(path: Path, lossless: bool = True) -> Original:
    ds = dcmread(path)
    syntax = ds.file_meta.TransferSyntaxUID
    photometric = str(ds.PhotometricInterpretation)
    if syntax.is_compressed:
        photometric = str(decompress(dcmread(path)).PhotometricInterpretation)
    ids = str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)
    return Original(path, syntax, ds.SOPClassUID, *ids, ds.pixel_array, photometric, lossless)


def ct_pixels(signed: bool) -> NDArray[np.generic]:
    """512x512 16-bit values a codec has to work for: a ramp (long runs
    for RLE, smooth areas for prediction) with seeded noise and edges,
    over the whole range of the representation."""
    rng = np.random.default_rng(14 + signed)
    y, x = np.mgrid[0:512, 0:512]
    ramp = (x * 97 + y * 31) % 4096
    noise = rng.integers(0, 64, size=(512, 512))
    block = ((x // 64 + y // 64) % 2) * 20000
    values = ramp + noise + block
    if signed:
        return (values - 16000).astype(np.int16)
    values[0, :8] = [0, 65535, 1, 65534, 32768, 32767, 0, 65535]  # the extremes, side by side
    return values.astype(np.uint16)


def ct(path: Path, signed: bool, study: str | None = None) -> Original:
    """A synthetic uncompressed 512x512 CT with all 16 bits stored."""
    pixels = ct_pixels(signed)
    ds = synth.ct(patient_id="TRANSCODE-CT", study_uid=study, pixel_bytes=2)
    ds.Rows = ds.Columns = 512
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = int(signed)
    ds.PixelData = pixels.tobytes()
    synth.write(ds, path)
    return describe(path)


def truncated(source: Path, out: Path, study: str, cut: int = 100) -> Original:
    """*source* (a single-frame encapsulated object) under a fresh instance
    of *study*, with the last *cut* bytes of its frame gone: the end-of-image
    marker with them. The items are re-encapsulated, so the file parses."""
    ds = dcmread(source)
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    assert frame.rstrip(b"\0").endswith(b"\xff\xd9")  # what the cut removes
    ds.PixelData = encapsulate([frame[:-cut]])
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = ds.get("PatientID") or "TRANSCODE"
    ds.save_as(out, enforce_file_format=True)
    ids = str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)
    return Original(out, ds.file_meta.TransferSyntaxUID, ds.SOPClassUID, *ids, np.zeros(0), "", True)
