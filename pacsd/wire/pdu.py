"""PDU framing (PS3.8 9.3): reading PDUs, splitting and building P-DATA."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Protocol

ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA = 0x04
RELEASE_RQ = 0x05
RELEASE_RP = 0x06
ABORT = 0x07

# Message control header bits (PS3.8 E.2).
COMMAND = 0x01
LAST = 0x02

# The largest P-DATA-TF we accept (announced in the A-ASSOCIATE-AC) and
# send: large enough that a 512 KB image is a handful of PDUs, small
# enough that a peer cannot make us allocate without bound.
MAX_PDU = 1 << 20

_HEADER = struct.Struct(">BxI")
_PDV = struct.Struct(">IBB")
_FIXED = struct.Struct(">BxIxBBB")  # A-ASSOCIATE-RJ and A-ABORT: 4-byte body


class Reader(Protocol):
    def read(self, size: int) -> bytes: ...


class ProtocolError(Exception):
    """The peer broke the protocol or the connection ended mid-PDU."""


def read(reader: Reader, limit: int = MAX_PDU + 6) -> tuple[int, bytes]:
    """The next PDU as (type, body); raises ProtocolError when the
    connection closes or the PDU is larger than *limit*."""
    head = reader.read(6)
    if len(head) < 6:
        raise ProtocolError("connection closed" if not head else "connection closed inside a PDU header")
    kind, length = _HEADER.unpack(head)
    if length > limit:
        raise ProtocolError(f"PDU of {length} bytes exceeds the {limit} negotiated")
    body = reader.read(length)
    if len(body) < length:
        raise ProtocolError("connection closed inside a PDU")
    return kind, body


def whole(kind: int, body: bytes) -> bytes:
    """A PDU read by :func:`read`, as it was on the wire."""
    return _HEADER.pack(kind, len(body)) + body


def pdvs(body: bytes) -> Iterator[tuple[int, int, memoryview]]:
    """(context ID, control header, data) of each PDV in a P-DATA-TF body."""
    view = memoryview(body)
    offset = 0
    while offset < len(view):
        if offset + 6 > len(view):
            raise ProtocolError("truncated PDV item")
        length, context_id, control = _PDV.unpack_from(view, offset)
        if length < 2 or offset + 4 + length > len(view):
            raise ProtocolError(f"PDV item length {length} does not fit its PDU")
        yield context_id, control, view[offset + 6 : offset + 4 + length]
        offset += 4 + length


def p_data_header(context_id: int, control: int, size: int) -> bytes:
    """PDU and PDV headers for one PDV of *size* bytes in one P-DATA-TF."""
    return _HEADER.pack(P_DATA, size + 6) + _PDV.pack(size + 2, context_id, control)


def fragment_size(peer_max: int) -> int:
    """Data bytes per PDV so that each P-DATA-TF fits the peer's maximum
    (0 means no limit, PS3.8 D.1)."""
    limit = MAX_PDU if peer_max == 0 else min(peer_max, MAX_PDU)
    return max(limit - 6, 1)


def fixed(kind: int, a: int = 0, b: int = 0, c: int = 0) -> bytes:
    """A PDU with a 4-byte body: A-ASSOCIATE-RJ (result, source, reason),
    A-RELEASE-RQ/RP (all zero), A-ABORT (source and reason in b, c)."""
    return _FIXED.pack(kind, 4, a, b, c)
