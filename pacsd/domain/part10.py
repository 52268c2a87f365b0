"""Part 10 files as pacsd writes them: the file meta it puts before a
received dataset, and where that dataset starts again when read back."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pacsd.domain import uid
from pacsd.domain.received import Received, Spooled


def _element(elem: int, vr: bytes, value: bytes) -> bytes:
    """One group 0002 element, explicit VR little endian, short form."""
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value


def file_meta(received: Received) -> bytes:
    """Preamble, 'DICM' and the File Meta Information for *received*.

    Encoded by hand: it is the same seven elements for every object, and
    building it through pydicom cost 0.4 ms of a store.
    """
    return meta_for(received.sop_class_uid, received.sop_instance_uid, received.transfer_syntax, received.source_ae)


def meta_for(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str = "") -> bytes:
    """The same preamble and File Meta Information, from its values (a
    WADO-RS part: a stored dataset, maybe converted, made a file again)."""
    body = b"".join(
        [
            struct.pack("<HH2s2xI", 0x0002, 0x0001, b"OB", 2) + b"\0\1",  # File Meta Information Version
            _element(0x0002, b"UI", sop_class_uid.encode()),
            _element(0x0003, b"UI", sop_instance_uid.encode()),
            _element(0x0010, b"UI", transfer_syntax.encode()),
            _element(0x0012, b"UI", uid.IMPLEMENTATION_CLASS_UID.encode()),
            _element(0x0013, b"SH", uid.IMPLEMENTATION_VERSION_NAME.encode()),
            _element(0x0016, b"AE", source_ae.encode("ascii", "replace")) if source_ae else b"",
        ]
    )
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return b"\0" * 128 + b"DICM" + group_length + body


def file_parts(meta: bytes, dataset: bytes | Spooled) -> tuple[list[bytes], str | None]:
    """What :meth:`Storage.write_temp` writes for a Part 10 file: the
    chunks, and the spool file to append (its bytes never pass through memory)."""
    if isinstance(dataset, Spooled):
        return [meta], dataset.path
    return [meta, dataset], None


def dataset_offset(head: bytes, size: int, name: object) -> int:
    """Where the dataset starts in a Part 10 file pacsd wrote, from the
    file's first 144 bytes (*head*, or more) and its *size*."""
    # Our meta starts with (0002,0000) UL File Meta Information Group Length.
    if head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
        raise ValueError(f"{name}: not a Part 10 file written by pacsd")
    offset = 144 + int.from_bytes(head[140:144], "little")
    if offset > size:
        raise ValueError(f"{name}: file meta runs past the end of the file")
    return offset


def dataset_extent(file: BinaryIO) -> tuple[int, int]:
    """(offset, length) of the dataset bytes in an open Part 10 file pacsd
    wrote; the file is left positioned at the dataset."""
    size = os.fstat(file.fileno()).st_size
    offset = dataset_offset(file.read(144), size, file.name)
    file.seek(offset)
    return offset, size - offset


def stored_dataset(path: Path) -> bytes:
    """The dataset bytes of a Part 10 file pacsd wrote (after its file meta)."""
    data = path.read_bytes()
    return data[dataset_offset(data, len(data), path) :]


@dataclass(frozen=True)
class FileRegion:
    """*length* bytes of the file at *path* from *offset*: a dataset sent
    from disk, read in chunks while it goes out."""

    path: str
    offset: int
    length: int

    @classmethod
    def of(cls, spooled: Spooled) -> FileRegion:
        return cls(spooled.path, 0, spooled.size)

    def __len__(self) -> int:
        return self.length
