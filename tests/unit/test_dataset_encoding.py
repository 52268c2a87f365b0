"""The hand encoder of C-FIND responses writes exactly what pydicom writes,
and leaves to pydicom whatever it does not handle."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import dsutils

from pacsd.wire.dataset import decode, encode, encode_text_only


def response(**values: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.RetrieveAETitle = "PACSD"
    ds.StudyInstanceUID = "1.2.840.113619.2.55.3"  # odd length: padded with NUL
    ds.PatientName = "Doe^John"
    ds.PatientID = "PID7"  # even length
    ds.StudyDate = "20240101"
    ds.StudyTime = None  # universal key returned empty
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.NumberOfStudyRelatedInstances = 100
    ds.StudyDescription = "Chest"
    ds.add_new(0x00081190, "UR", "http://example.org/a")  # 4-byte length in explicit VR
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


CASES = {
    "typical": response(),
    "empty values": response(PatientName="", AccessionNumber=None, SeriesNumber=None),
    "latin-1 declared, ascii values": response(SpecificCharacterSet="ISO_IR 100"),
    "decimal and names with groups": response(PatientWeight="72.5", ReferringPhysicianName="Wang^Xiao=="),
}


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("case", list(CASES))
def test_same_bytes_as_pydicom(case: str, syntax: UID) -> None:
    ds = CASES[case]
    ours = encode_text_only(ds, syntax)
    assert ours is not None
    assert ours == dsutils.encode(ds, syntax.is_implicit_VR, syntax.is_little_endian, False)
    assert decode(ours, syntax).PatientName == ds.PatientName


@pytest.mark.parametrize(
    "ds, syntax",
    [
        (response(PatientName="Müller^Hans", SpecificCharacterSet="ISO_IR 100"), ExplicitVRLittleEndian),
        (response(RequestAttributesSequence=[Dataset()]), ExplicitVRLittleEndian),
        (response(Rows=512), ImplicitVRLittleEndian),  # US: binary
        (response(), ExplicitVRBigEndian),
        (response(), DeflatedExplicitVRLittleEndian),
    ],
    ids=["non-ascii text", "sequence", "binary VR", "big endian", "deflated"],
)
def test_everything_else_goes_to_pydicom(ds: Dataset, syntax: UID) -> None:
    assert encode_text_only(ds, syntax) is None
    assert encode(ds, syntax) == dsutils.encode(ds, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
