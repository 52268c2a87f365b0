"""An object as it arrives, before anything is written: its encoded
dataset (in memory, or spooled to a file when large), the UIDs its request
names, and the checks every arrival passes (C-STORE, a proxy fetch, an
import from disk) before it may be stored or staged."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom.filereader import read_file_meta_info

from pacsd.domain import uid
from pacsd.domain.errors import RequestMismatch, SOPClassMismatch
from pacsd.domain.header import Header, read_header
from pacsd.domain.limits import Limits


@dataclass(frozen=True)
class Spooled:
    """A received dataset that lives in a file: exactly its bytes, in the
    transfer syntax it came in. Whoever takes it removes the file."""

    path: str
    size: int

    def __len__(self) -> int:
        return self.size

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class Received:
    """An encoded dataset as it came off the wire, with its request."""

    dataset: bytes | Spooled  # no file meta, in transfer_syntax; a large one in a file
    transfer_syntax: str
    sop_class_uid: str  # from the C-STORE request (Affected SOP Class UID)
    sop_instance_uid: str  # Affected SOP Instance UID
    source_ae: str


@contextmanager
def dataset_view(dataset: bytes | Spooled) -> Iterator[bytes | mmap.mmap]:
    """The dataset's bytes to read from: a spooled one mapped, not read
    (the header walk touches element headers only, not pixel data)."""
    if not isinstance(dataset, Spooled):
        yield dataset
        return
    with open(dataset.path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        yield view


def validate(received: Received, limits: Limits) -> Header:
    """Read the header of *received* (within *limits*) and check its identifiers."""
    with dataset_view(received.dataset) as view:
        header = read_header(view, received.transfer_syntax, limits)
    uid.require(header.sop_class_uid, "SOP Class UID (0008,0016)")
    uid.require(header.sop_instance_uid, "SOP Instance UID (0008,0018)")
    uid.require(header.study_uid, "Study Instance UID (0020,000D)")
    uid.require(header.series_uid, "Series Instance UID (0020,000E)")
    if header.sop_class_uid != received.sop_class_uid:
        raise SOPClassMismatch(
            f"SOP Class UID {header.sop_class_uid} in the dataset differs from {received.sop_class_uid} in the request"
        )
    if header.sop_instance_uid != received.sop_instance_uid:
        raise RequestMismatch(
            f"SOP Instance UID {header.sop_instance_uid} in the dataset differs from "
            f"{received.sop_instance_uid} in the request"
        )
    return header


def received_from_file(path: Path) -> Received:
    """A Part 10 file on disk as if it had arrived: its dataset bytes after
    the file meta, with the UIDs and syntax its file meta names."""
    meta = read_file_meta_info(path)
    offset = 132 + 12 + int(meta.FileMetaInformationGroupLength)  # 'DICM', then (0002,0000) UL
    return Received(
        dataset=path.read_bytes()[offset:],
        transfer_syntax=str(meta.TransferSyntaxUID),
        sop_class_uid=str(meta.MediaStorageSOPClassUID),
        sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
        source_ae=str(meta.get("SourceApplicationEntityTitle", "")),
    )
