"""Datasets (identifiers, converted objects) to and from the bytes of a
transfer syntax, for the messages that need them decoded."""

from __future__ import annotations

from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import dsutils
from pynetdicom.presentation import PresentationContext


def syntax_of(context: PresentationContext) -> UID:
    return UID(str(context.transfer_syntax[0]))


def decode(data: bytes, syntax: UID) -> Dataset:
    return dsutils.decode(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)


def encode(ds: Dataset, syntax: UID) -> bytes:
    """*ds* encoded in *syntax*; ValueError if it cannot be."""
    data = dsutils.encode(ds, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
    if data is None:
        raise ValueError(f"the dataset cannot be encoded in {syntax.name}")
    return data
