"""PDU framing (PS3.8 9.3): reading PDUs, splitting and building P-DATA."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Protocol

from pacsd.domain.limits import BudgetExceeded

ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA = 0x04
RELEASE_RQ = 0x05
RELEASE_RP = 0x06
ABORT = 0x07
KNOWN_TYPES = frozenset(range(ASSOCIATE_RQ, ABORT + 1))

# Message control header bits (PS3.8 E.2).
COMMAND = 0x01
LAST = 0x02

# The largest P-DATA-TF we send, whatever the peer allows (0: no limit):
# large enough that a 512 KB image is a handful of PDUs. What we accept is
# the budget limits.max_pdu_bytes, announced in the A-ASSOCIATE-AC.
MAX_PDU = 1 << 20

# A-ABORT source and reason (PS3.8 9.3.8, table 9-26).
SOURCE_USER = 0  # DICOM UL service-user
SOURCE_PROVIDER = 2  # DICOM UL service-provider
REASON_NOT_SPECIFIED = 0
REASON_UNRECOGNIZED_PDU = 1
REASON_UNEXPECTED_PDU = 2
REASON_INVALID_PARAMETER = 6

# A peer counting the 6-byte PDU header in its maximum is tolerated.
HEADER_SLACK = 6

_HEADER = struct.Struct(">BxI")
_PDV = struct.Struct(">IBB")
_FIXED = struct.Struct(">BxIxBBB")  # A-ASSOCIATE-RJ and A-ABORT: 4-byte body


class Reader(Protocol):
    def read(self, size: int, deadline: float | None = None) -> bytes:
        """*size* bytes, fewer only if the connection closed; the whole read
        done by *deadline* (time.monotonic()) or BudgetExceeded."""
        ...

    def buffered(self) -> int:
        """Bytes already received and not yet read."""
        ...


class ProtocolError(Exception):
    """The peer broke the protocol. Raised as such by the DIMSE side (a
    service-user matter: A-ABORT source 0); see :class:`PduError`."""


class PduError(ProtocolError):
    """The upper layer itself detected the error: A-ABORT with source 2
    (service provider) and *reason* (PS3.8 table 9-26)."""

    def __init__(self, message: str, reason: int = REASON_INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason


class Closed(PduError):
    """The connection ended where a PDU, or the rest of one, was due."""


def read(
    reader: Reader, limit: int, budget: str = "max_pdu_bytes", pdu_timeout: float | None = None
) -> tuple[int, bytes]:
    """The next PDU as (type, body). The first byte may take as long as the
    reader allows (the silence between PDUs); the rest must arrive within
    *pdu_timeout* seconds. A body over *limit* bytes is never read:
    BudgetExceeded(*budget*)."""
    if reader.buffered() >= 6:  # the common case: it came with the previous PDU's bytes
        head = reader.read(6)
        deadline = None if pdu_timeout is None else time.monotonic() + pdu_timeout
    else:
        first = reader.read(1)
        if not first:
            raise Closed("connection closed", REASON_NOT_SPECIFIED)
        deadline = None if pdu_timeout is None else time.monotonic() + pdu_timeout
        head = first + reader.read(5, deadline)
    if len(head) < 6:
        raise Closed("connection closed inside a PDU header")
    kind, length = _HEADER.unpack(head)
    if kind not in KNOWN_TYPES:
        raise PduError(f"unrecognized PDU type 0x{kind:02X}", REASON_UNRECOGNIZED_PDU)
    if length > limit:
        raise BudgetExceeded(budget, f"PDU of {length} bytes exceeds the {limit} allowed ({budget})")
    body = reader.read(length, deadline)
    if len(body) < length:
        raise Closed("connection closed inside a PDU")
    return kind, body


def whole(kind: int, body: bytes) -> bytes:
    """A PDU read by :func:`read`, as it was on the wire."""
    return _HEADER.pack(kind, len(body)) + body


def pdvs(body: bytes) -> Iterator[tuple[int, int, memoryview]]:
    """(context ID, control header, data) of each PDV in a P-DATA-TF body."""
    view = memoryview(body)
    if not view:
        raise PduError("P-DATA-TF without a PDV item")
    offset = 0
    while offset < len(view):
        if offset + 6 > len(view):
            raise PduError("truncated PDV item")
        length, context_id, control = _PDV.unpack_from(view, offset)
        if length < 2 or offset + 4 + length > len(view):
            raise PduError(f"PDV item length {length} does not fit its PDU")
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


def abort(source: int, reason: int) -> bytes:
    """A-ABORT from *source* for *reason* (0 unless source is 2)."""
    return fixed(ABORT, 0, source, reason)
