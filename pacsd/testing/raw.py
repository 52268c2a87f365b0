"""Datasets as exact bytes, for tests that need what pydicom would refuse
to write: elements spliced in with raw values, Part 10 files around given
dataset bytes, deflate bombs."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from pacsd.testing import synth

MiB = 1024 * 1024
EXPLICIT_LE = str(ExplicitVRLittleEndian)
DEFLATED = str(DeflatedExplicitVRLittleEndian)
BOMB_BYTES = 256 * MiB  # zeros in the bomb's pixel data, once inflated


LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


def with_raw(ds: Dataset, **values: tuple[str, bytes]) -> bytes:
    """*ds* encoded (explicit VR little endian) with elements holding exactly
    these bytes, keyword=(VR, value): spliced in tag order, so pydicom never
    sees (or warns about, or refuses) the malformed values."""
    for keyword in values:
        if keyword in ds:
            del ds[keyword]
    data = encode(ds)
    extra = {int(Tag(k)): _element(int(Tag(k)), vr.encode(), value) for k, (vr, value) in values.items()}
    out, pos = [], 0
    while pos < len(data):
        group, elem, vr = struct.unpack_from("<HH2s", data, pos)
        tag = (group << 16) | elem
        for t in sorted(t for t in extra if t < tag):
            out.append(extra.pop(t))
        if vr in LONG_VRS:
            end = pos + 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            end = pos + 8 + struct.unpack_from("<H", data, pos + 6)[0]
        out.append(data[pos:end])
        pos = end
    out += [extra[t] for t in sorted(extra)]
    return b"".join(out)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" "
    if vr in LONG_VRS:
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def encode(ds: Dataset) -> bytes:
    buf = BytesIO()
    fp = DicomFileLike(buf)
    fp.is_implicit_VR, fp.is_little_endian = False, True
    write_dataset(fp, ds)
    return buf.getvalue()


def part10(path: Path, ds: Dataset, syntax: str, dataset_bytes: bytes) -> Path:
    """A Part 10 file of *dataset_bytes* (already in *syntax*), sent byte for
    byte by the SCU fixture."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.9.7433.1")
    buf = BytesIO()
    buf.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(DicomFileLike(buf), meta)
    path.write_bytes(buf.getvalue() + dataset_bytes)
    return path


def deflate_bomb(ds: Dataset, zeros: int = BOMB_BYTES) -> bytes:
    """*ds* (a small header) then an OB of *zeros* zero bytes, raw-deflated
    in chunks: about 256 KiB for 256 MiB, never held inflated here."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [deflater.compress(encode(ds)), deflater.compress(struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", zeros))]
    chunk = bytes(MiB)
    for _ in range(zeros // MiB):
        out.append(deflater.compress(chunk))
    out.append(deflater.flush())
    return b"".join(out)


def small_header() -> Dataset:
    ds = synth.ct(patient_id="BOMB", pixel_bytes=2)
    del ds.PixelData
    return ds
