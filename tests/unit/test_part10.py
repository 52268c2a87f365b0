"""The file meta pacsd encodes by hand equals pynetdicom's (and pydicom's)
encoding of the same elements, byte for byte; and dataset offsets in files."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from pacsd.domain import uid
from pacsd.domain.part10 import dataset_offset, file_meta, stored_dataset
from pacsd.domain.received import Received
from pacsd.testing import synth

ODD = "1.2.3.4.5"  # 9 characters: padded with a NUL to 10
EVEN = "1.2.3.4.56"  # 10 characters: no padding
XA = "1.2.840.10008.5.1.4.1.1.12.1"  # an even-length SOP class (CT's is odd)


def reference(received: Received) -> bytes:
    """The same File Meta Information encoded by pynetdicom/pydicom."""
    meta = create_file_meta(
        sop_class_uid=UID(received.sop_class_uid),
        sop_instance_uid=UID(received.sop_instance_uid),
        transfer_syntax=UID(received.transfer_syntax),
        implementation_uid=UID(uid.IMPLEMENTATION_CLASS_UID),
        implementation_version=uid.IMPLEMENTATION_VERSION_NAME,
    )
    if received.source_ae:
        meta.SourceApplicationEntityTitle = received.source_ae
    return encode_file_meta(meta)


def received(sop_class: str, sop_instance: str, syntax: str, source_ae: str) -> Received:
    return Received(b"", syntax, sop_class, sop_instance, source_ae)


@pytest.mark.parametrize("sop_instance", [ODD, EVEN], ids=["odd-uid", "even-uid"])
@pytest.mark.parametrize("sop_class", [CTImageStorage, XA], ids=["odd-class", "even-class"])
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless])
@pytest.mark.parametrize("source_ae", ["", "MODALITY", "CT1", "A" * 16], ids=["no-source", "even", "odd", "longest"])
def test_file_meta_equals_pynetdicoms_encoding(sop_class: str, sop_instance: str, syntax: str, source_ae: str) -> None:
    item = received(sop_class, sop_instance, syntax, source_ae)
    ours = file_meta(item)
    assert ours[:128] == b"\0" * 128 and ours[128:132] == b"DICM"
    assert ours[132:] == reference(item)


def test_the_cases_are_what_they_claim() -> None:
    # The parameters above cover both paddings of each padded element.
    assert [len(u) % 2 for u in (ODD, EVEN, CTImageStorage, XA)] == [1, 0, 1, 0]
    assert [len(u) % 2 for u in (ExplicitVRLittleEndian, JPEG2000Lossless)] == [1, 0]
    assert [len(ae) % 2 for ae in ("MODALITY", "CT1")] == [0, 1]


def test_file_meta_reads_back_with_pydicom(tmp_path: Path) -> None:
    item = received(CTImageStorage, ODD, ExplicitVRLittleEndian, "CT1")
    (tmp_path / "meta").write_bytes(file_meta(item))
    meta = pydicom.filereader.read_file_meta_info(tmp_path / "meta")
    assert meta.MediaStorageSOPClassUID == CTImageStorage
    assert meta.MediaStorageSOPInstanceUID == ODD
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert meta.ImplementationClassUID == uid.IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == uid.IMPLEMENTATION_VERSION_NAME
    assert meta.SourceApplicationEntityTitle == "CT1"
    assert meta.FileMetaInformationVersion == b"\0\1"


def pydicom_file(path: Path, source_ae: str = "") -> Path:
    """A Part 10 file written by pydicom (its own file meta, group length first)."""
    ds = synth.ct(patient_id="P10")
    synth.set_meta(ds, ExplicitVRLittleEndian)
    if source_ae:
        ds.file_meta.SourceApplicationEntityTitle = source_ae
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("source_ae", ["", "ODDAE"])
def test_dataset_offset_of_files_pydicom_writes(tmp_path: Path, source_ae: str) -> None:
    path = pydicom_file(tmp_path / "ct.dcm", source_ae)
    data = path.read_bytes()
    meta = pydicom.filereader.read_file_meta_info(path)
    expected = 132 + 12 + int(meta.FileMetaInformationGroupLength)
    assert dataset_offset(data[:144], len(data), path) == expected
    # What follows is the dataset, whole: it decodes to the object written.
    dataset = stored_dataset(path)
    assert dataset == data[expected:]
    decoded = pydicom.dcmread(BytesIO(dataset), force=True)
    assert decoded.SOPInstanceUID == pydicom.dcmread(path).SOPInstanceUID


def test_dataset_offset_of_files_pacsd_writes() -> None:
    item = Received(b"\x08\x00\x18\x00UI\x04\x001.2\0", ExplicitVRLittleEndian, CTImageStorage, EVEN, "AE")
    data = file_meta(item) + bytes(item.dataset)  # type: ignore[arg-type]
    assert data[dataset_offset(data, len(data), "x") :] == item.dataset


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\0" * 200,  # no 'DICM'
        b"\0" * 128 + b"DICM" + b"\x02\x00\x01\x00OB\0\0" + b"\0" * 20,  # meta without its group length first
        b"\0" * 128 + b"DICN" + b"\x02\x00\x00\x00UL\x04\x00\x00\x00\x00\x00",
    ],
    ids=["empty", "no-dicm", "no-group-length", "wrong-magic"],
)
def test_dataset_offset_refuses_garbage(head: bytes) -> None:
    with pytest.raises(ValueError, match="not a Part 10 file written by pacsd"):
        dataset_offset(head, len(head), "garbage.dcm")


def test_dataset_offset_refuses_a_meta_longer_than_the_file() -> None:
    head = b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + (1000).to_bytes(4, "little")
    with pytest.raises(ValueError, match="runs past the end"):
        dataset_offset(head, len(head) + 10, "short.dcm")
