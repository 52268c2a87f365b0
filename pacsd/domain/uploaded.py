"""A Part 10 file as an upload carries it (a STOW-RS part): its file meta
read, its dataset located, made into a :class:`Received` as if it had
come in a C-STORE (the file meta naming what the C-STORE request would).

The file meta is parsed here, not by pydicom: it is a short run of group
0002 elements in Explicit VR Little Endian, and pydicom reads file meta
only from a path, while an upload is an open (spooled) file.
"""

from __future__ import annotations

import os
import struct
import uuid
from typing import IO

from pacsd.domain.errors import InvalidObject
from pacsd.domain.received import Received, Spooled

PREAMBLE = 128
META_MAX = 64 * 1024  # seven short elements in practice; past this it is not a file meta
# Explicit VR elements whose length is 4 bytes after 2 reserved ones (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_WANTED = {
    0x0002: "Media Storage SOP Class UID (0002,0002)",
    0x0003: "Media Storage SOP Instance UID (0002,0003)",
    0x0010: "Transfer Syntax UID (0002,0010)",
}
_SOURCE_AE = 0x0016


def file_meta(head: bytes) -> tuple[dict[int, str], int]:
    """The text values of the group 0002 elements at the start of a Part 10
    file (*head*: its first bytes, up to ``PREAMBLE + 4 + META_MAX``; the
    preamble and 'DICM' may be missing), by
    element number, and the offset where the dataset starts. Raises
    :class:`InvalidObject` naming what is wrong."""
    if head[PREAMBLE : PREAMBLE + 4] == b"DICM":
        at = PREAMBLE + 4
    elif head[:2] == b"\x02\x00" and head[4:6].isalpha():
        at = 0  # the file meta without preamble and prefix, as pydicom writes a dataset that has no preamble
    else:
        raise InvalidObject("not a DICOM Part 10 file: no 'DICM' after a 128-byte preamble, no file meta")
    values: dict[int, str] = {}
    while at + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, at)
        if group != 0x0002:
            break
        vr = head[at + 4 : at + 6]
        if vr in _LONG_VRS:
            if at + 12 > len(head):
                break
            (length,) = struct.unpack_from("<I", head, at + 8)
            start = at + 12
        else:
            (length,) = struct.unpack_from("<H", head, at + 6)
            start = at + 8
        if length == 0xFFFFFFFF or start + length > len(head):
            raise InvalidObject(f"file meta element (0002,{element:04X}) runs past the file meta's bound")
        if element in _WANTED or element == _SOURCE_AE:
            values[element] = head[start : start + length].decode("ascii", "replace").rstrip("\0 ")
        at = start + length
    else:
        if len(head) >= PREAMBLE + 4 + META_MAX:
            raise InvalidObject(f"file meta longer than {META_MAX // 1024} KiB")
    for element, name in _WANTED.items():
        if not values.get(element):
            raise InvalidObject(f"file meta has no {name}")
    return values, at


def received_from_upload(file: IO[bytes], size: int, spool_dir: str, in_memory_max: int) -> Received:
    """The object in the Part 10 file *file* (*size* bytes): its dataset
    read into memory up to *in_memory_max* bytes, else copied by the
    kernel into a new file in *spool_dir* (the caller discards it)."""
    file.seek(0)
    values, offset = file_meta(file.read(PREAMBLE + 4 + META_MAX))
    length = size - offset
    if length <= 0:
        raise InvalidObject("no dataset after the file meta")
    if length <= in_memory_max:
        file.seek(offset)
        dataset: bytes | Spooled = file.read()
    else:
        dataset = _copy(file, offset, length, spool_dir)
    return Received(
        dataset=dataset,
        transfer_syntax=values[0x0010],
        sop_class_uid=values[0x0002],
        sop_instance_uid=values[0x0003],
        source_ae=values.get(_SOURCE_AE, ""),
    )


def _copy(file: IO[bytes], offset: int, length: int, spool_dir: str) -> Spooled:
    path = os.path.join(spool_dir, f"{uuid.uuid4().hex}.spool")
    source = file.fileno()  # a spooled upload this large is on disk already
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        done = 0
        while done < length:
            copied = os.copy_file_range(source, target, length - done, offset + done)
            if copied == 0:
                raise InvalidObject(f"upload ended {length - done} bytes early")
            done += copied
    except BaseException:
        os.close(target)
        os.unlink(path)
        raise
    os.close(target)
    return Spooled(path, length)
