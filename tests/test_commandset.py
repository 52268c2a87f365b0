"""The fast command set encoder gives pynetdicom's bytes, or defers to it."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from pacsd.dimse.commandset import encode_command_set


def command(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    "ds",
    [
        command(  # C-STORE-RQ as pynetdicom's move sends it
            CommandGroupLength=0, AffectedSOPClassUID="1.2.840.10008.5.1.4.1.1.2", CommandField=1, MessageID=7,
            Priority=2, CommandDataSetType=0, AffectedSOPInstanceUID="2.25.1234567",
            MoveOriginatorApplicationEntityTitle="RETRIEVER", MoveOriginatorMessageID=3,
        ),
        command(  # C-STORE-RSP with an odd-length comment
            AffectedSOPClassUID="1.2.840.10008.5.1.4.1.1.2", CommandField=0x8001, MessageIDBeingRespondedTo=7,
            CommandDataSetType=0x0101, Status=0xC010, ErrorComment="study 1.2.3 belongs to another patient",
            AffectedSOPInstanceUID="1.2.3",
        ),
        command(  # C-MOVE-RSP pending with counts
            AffectedSOPClassUID="1.2.840.10008.5.1.4.1.2.2.2", CommandField=0x8021, MessageIDBeingRespondedTo=1,
            CommandDataSetType=0x0101, Status=0xFF00, NumberOfRemainingSuboperations=99,
            NumberOfCompletedSuboperations=1, NumberOfFailedSuboperations=0, NumberOfWarningSuboperations=0,
        ),
        command(Status=0, ErrorComment=""),  # empty values
        command(Status=0xC010, ErrorComment="Müller"),  # non-ASCII: pynetdicom encodes it
    ],
)  # fmt: skip
def test_same_bytes_as_pynetdicom(ds: Dataset) -> None:
    assert encode_command_set(ds, True, True) == encode(ds, True, True)


def test_other_encodings_defer_to_pynetdicom() -> None:
    ds = command(Status=0, AffectedSOPInstanceUID="1.2.3")
    assert encode_command_set(ds, False, True) == encode(ds, False, True)
