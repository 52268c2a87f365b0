"""DIMSE command sets (PS3.7 E.1): group 0000, Implicit VR Little Endian.

A command set is a dozen short elements; decoding it into a dict of raw
values and encoding it from (element, VR, value) triples costs a few
microseconds, against a fifth of a millisecond through pydicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pacsd.wire.pdu import ProtocolError

# Command Field values (PS3.7 E.1-1).
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_GET_RQ = 0x0010
C_GET_RSP = 0x8010
C_FIND_RQ = 0x0020
C_FIND_RSP = 0x8020
C_MOVE_RQ = 0x0021
C_MOVE_RSP = 0x8021
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_CANCEL_RQ = 0x0FFF
N_SET_RQ = 0x0120
N_SET_RSP = 0x8120
N_CREATE_RQ = 0x0140
N_CREATE_RSP = 0x8140

# Element numbers in group 0000.
AFFECTED_SOP_CLASS = 0x0002
REQUESTED_SOP_CLASS = 0x0003
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
RESPONDING_TO = 0x0120
MOVE_DESTINATION = 0x0600
PRIORITY = 0x0700
DATASET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
ERROR_ID = 0x0903
AFFECTED_SOP_INSTANCE = 0x1000
REQUESTED_SOP_INSTANCE = 0x1001
ATTRIBUTE_IDENTIFIER_LIST = 0x1005
REMAINING = 0x1020
COMPLETED = 0x1021
FAILED = 0x1022
WARNING = 0x1023
MOVE_ORIGINATOR_AE = 0x1030
MOVE_ORIGINATOR_ID = 0x1031

NO_DATASET = 0x0101
HAS_DATASET = 0x0000

_ELEMENT = struct.Struct("<HHI")
_US = struct.Struct("<H")
_UL = struct.Struct("<I")
_TEXT_PAD = {"UI": b"\0", "AE": b" ", "LO": b" ", "SH": b" ", "CS": b" ", "ST": b" ", "LT": b" "}


@dataclass(frozen=True)
class Command:
    """A decoded command set: raw values by element number."""

    values: dict[int, bytes]

    @property
    def field(self) -> int:
        return self.us(COMMAND_FIELD)

    @property
    def has_dataset(self) -> bool:
        return self.us(DATASET_TYPE, NO_DATASET) != NO_DATASET

    def us(self, elem: int, default: int = 0) -> int:
        raw = self.values.get(elem)
        if raw is None or len(raw) < 2:
            return default
        return int(_US.unpack_from(raw)[0])

    def text(self, elem: int) -> str:
        """A UI/AE/LO value without padding; undecodable bytes replaced."""
        raw = self.values.get(elem, b"")
        return raw.decode("ascii", "replace").rstrip("\0 ").lstrip(" ")


def decode(data: bytes) -> Command:
    values: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise ProtocolError("truncated command set")
        group, elem, length = _ELEMENT.unpack_from(data, offset)
        offset += 8
        if group != 0x0000 or offset + length > len(data):
            raise ProtocolError(f"malformed command element ({group:04X},{elem:04X})")
        values[elem] = bytes(data[offset : offset + length])
        offset += length
    if COMMAND_FIELD not in values:
        raise ProtocolError("command set without a Command Field")
    return Command(values)


def encode_value(vr: str, value: Any) -> bytes | None:
    """*value* encoded as *vr*, or None if it is not a plain command value
    (a multi-valued or non-ASCII string, an unexpected VR)."""
    if value is None or value == "":
        return b""
    if vr == "US" and type(value) is int:
        return _US.pack(value)
    if vr == "UL" and type(value) is int:
        return _UL.pack(value)
    if vr == "AT" and isinstance(value, list):  # tags, as ints
        return b"".join(struct.pack("<HH", tag >> 16, tag & 0xFFFF) for tag in value)
    pad = _TEXT_PAD.get(vr)
    if pad is not None and isinstance(value, str) and value.isascii() and "\\" not in value:
        raw = value.encode("ascii")
        return raw + pad if len(raw) % 2 else raw
    return None


def encode(elements: list[tuple[int, str, Any]]) -> bytes:
    """A command set from (element, VR, value) in ascending element order,
    with its Command Group Length; text that is not ASCII is replaced."""
    parts = []
    for elem, vr, value in elements:
        raw = encode_value(vr, value)
        if raw is None:
            raw = encode_value(vr, str(value).encode("ascii", "replace").decode().replace("\\", "/"))
            assert raw is not None
        parts.append(_ELEMENT.pack(0x0000, elem, len(raw)))
        parts.append(raw)
    body = b"".join(parts)
    return _ELEMENT.pack(0x0000, 0x0000, 4) + _UL.pack(len(body)) + body


def response(
    request: Command,
    field: int,
    status: int,
    comment: str = "",
    extra: list[tuple[int, str, Any]] | None = None,
    has_dataset: bool = False,
) -> bytes:
    """The response command set to *request*: its SOP class and instance,
    the Message ID it answers, *status* and (if given) an Error Comment.
    The comment is not cut to LO's 64 characters: one naming two patient
    keys and a UID needs more, and DCMTK and pynetdicom read it whole."""
    instance = request.text(AFFECTED_SOP_INSTANCE) if AFFECTED_SOP_INSTANCE in request.values else None
    return _response(request, field, status, request.text(AFFECTED_SOP_CLASS), instance, comment, extra, has_dataset)


def n_response(
    request: Command,
    field: int,
    status: int,
    sop_instance: str,
    comment: str = "",
    extra: list[tuple[int, str, Any]] | None = None,
    has_dataset: bool = False,
) -> bytes:
    """The response to an N-CREATE/N-SET *request* (PS3.7 10.3): it names
    the SOP class and instance it affected (the instance an N-CREATE made,
    or the one an N-SET requested)."""
    sop_class = request.text(AFFECTED_SOP_CLASS) or request.text(REQUESTED_SOP_CLASS)
    return _response(request, field, status, sop_class, sop_instance or None, comment, extra, has_dataset)


def _response(
    request: Command,
    field: int,
    status: int,
    sop_class: str,
    sop_instance: str | None,
    comment: str,
    extra: list[tuple[int, str, Any]] | None,
    has_dataset: bool,
) -> bytes:
    elements: list[tuple[int, str, Any]] = [
        (AFFECTED_SOP_CLASS, "UI", sop_class),
        (COMMAND_FIELD, "US", field),
        (RESPONDING_TO, "US", request.us(MESSAGE_ID)),
        (DATASET_TYPE, "US", HAS_DATASET if has_dataset else NO_DATASET),
        (STATUS, "US", status),
    ]
    if comment:
        elements.append((ERROR_COMMENT, "LO", comment))
    if sop_instance is not None:
        elements.append((AFFECTED_SOP_INSTANCE, "UI", sop_instance))
    elements.extend(extra or [])
    return encode(sorted(elements, key=lambda e: int(e[0])))
