"""Header reading from encoded bytes: the structure walk and extraction."""

from __future__ import annotations

import struct
from io import BytesIO

import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.dataset import Dataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset
from pynetdicom.dsutils import split_dataset

from pacsd.domain.errors import InvalidObject
from pacsd.domain.header import check_structure, read_header
from pacsd.testing import synth

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def encode(ds: Dataset, implicit: bool = False, little: bool = True) -> bytes:
    buf = BytesIO()
    fp = DicomFileLike(buf)
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    return buf.getvalue()


def nested() -> Dataset:
    ds = synth.ct(patient_id="H1", issuer="ISS", pixel_bytes=64)
    inner = Dataset()
    inner.CodeValue = "1"
    item = Dataset()
    item.RequestedProcedureID = "RP"
    item.ConceptNameCodeSequence = [inner]
    ds.RequestAttributesSequence = [item, item]
    return ds


@pytest.mark.parametrize("implicit, little", [(False, True), (True, True), (False, False)])
def test_complete_datasets_pass(implicit: bool, little: bool) -> None:
    check_structure(encode(nested(), implicit, little), implicit, little)


@pytest.mark.parametrize("implicit", [False, True])
def test_every_truncation_is_caught(implicit: bool) -> None:
    data = encode(nested(), implicit)
    for cut in range(1, len(data)):
        try:
            check_structure(data[:cut], implicit, True)
        except InvalidObject:
            continue
        # A cut exactly between two top-level elements is a valid, shorter
        # dataset; anything else must be refused.
        assert data[cut : cut + 4] in _top_level_tag_bytes(data, implicit), cut


def _top_level_tag_bytes(data: bytes, implicit: bool) -> set[bytes]:
    return {struct.pack("<HH", el.tag.group, el.tag.elem) for el in nested()}


def test_read_header_extracts_and_normalises() -> None:
    ds = synth.ct(patient_id="  PID7  ", issuer="ISS ", patient_name="Müller^Jürgen", pixel_bytes=64)
    header = read_header(encode(ds), EXPLICIT_LE)
    assert (header.patient_id, header.issuer) == ("PID7", "ISS")
    assert header.patient_name == "Müller^Jürgen"
    assert header.study_uid == ds.StudyInstanceUID and header.sop_instance_uid == ds.SOPInstanceUID
    assert header.modality == "CT" and header.series_number == 1


def test_garbage_is_refused() -> None:
    with pytest.raises(InvalidObject):
        read_header(b"\x08\x00\x16\x00ZZ\xff\xff" + b"\x00" * 40, EXPLICIT_LE)
    with pytest.raises(InvalidObject, match="empty"):
        read_header(b"", EXPLICIT_LE)


@pytest.mark.parametrize(
    "name",
    [
        "chrArab.dcm", "chrFren.dcm", "chrGerm.dcm", "chrGreek.dcm", "chrH31.dcm", "chrH32.dcm", "chrHbrw.dcm",
        "chrI2.dcm", "chrJapMulti.dcm", "chrKoreanMulti.dcm", "chrRuss.dcm", "chrX1.dcm", "chrX2.dcm",
    ],
)  # fmt: skip
def test_header_text_decodes_like_pydicom(name: str) -> None:
    path = get_charset_files(name)[0]
    ds = pydicom.dcmread(path)
    _, offset = split_dataset(path)
    with open(path, "rb") as f:
        header = read_header(f.read()[offset:], str(ds.file_meta.TransferSyntaxUID))
    assert header.patient_name == str(ds.PatientName)
    assert header.patient_id == str(ds.get("PatientID", ""))
    assert header.study_uid == ds.StudyInstanceUID
    assert header.study_description == str(ds.get("StudyDescription", "")).strip()
