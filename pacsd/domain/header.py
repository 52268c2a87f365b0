"""Read what the index needs from an encoded dataset, without decoding it all.

Objects are stored exactly as received, so the bytes on the wire are never
re-encoded. Two passes over those bytes:

1. :func:`check_structure` walks every element header (nested sequences and
   encapsulated fragments included) and proves each declared length fits.
   pydicom silently returns a partial dataset for truncated input; this
   walk is what turns a truncated object into a refusal.
2. :func:`read_header` decodes only the top-level elements the index
   keeps, from the positions the walk recorded.
"""

from __future__ import annotations

import datetime
import mmap
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from typing import Any, NamedTuple

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import TEXT_VR_DELIMS, PersonName

from pacsd.domain import inflate as inflating
from pacsd.domain.errors import InvalidObject, OverBudget
from pacsd.domain.limits import BudgetExceeded, Limits

# What a dataset may be read from: bytes, a view, or an mmap of a spooled
# file of gigabytes. Only struct.unpack_from and slices of single kept
# elements touch it, so nothing copies the whole buffer.
Buffer = bytes | bytearray | memoryview | mmap.mmap
DEFAULT_LIMITS = Limits()

UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
# Explicit VRs encoded with 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
MAX_DEPTH = 32
# A kept element's value is copied out of the buffer to be decoded; the
# longest legitimate one (a Request Attributes Sequence) is a few KiB.
MAX_KEPT_VALUE = 1 << 20
MAX_LOGGED_VALUE = 64  # characters of an ignored value in its log event

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_OLD_DATE = re.compile(r"([0-9]{4})\.([0-9]{2})\.([0-9]{2})")  # ACR-NEMA, PS3.5 6.2 note
_TIME = re.compile(r"([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(\.[0-9]{1,6})?)?)?")
_OLD_TIME = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]{1,6})?)?")

# The attributes the index keeps: the only values decoded (the walk reads
# every element header, to find truncation, but no other value).
KEPT_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyDate", "SeriesDate", "StudyTime",
    "SeriesTime", "AccessionNumber", "Modality", "ReferringPhysicianName", "StudyDescription",
    "SeriesDescription", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "BodyPartExamined", "StudyInstanceUID", "SeriesInstanceUID", "StudyID", "SeriesNumber", "InstanceNumber",
    "RequestAttributesSequence",
)  # fmt: skip
_TAGS = {k: int(Tag(k)) for k in KEPT_KEYWORDS}
_VRS = {k: dictionary_VR(Tag(k)) for k in KEPT_KEYWORDS}
KEPT = frozenset(_TAGS.values())


@dataclass(frozen=True)
class Request:
    """One item of the Request Attributes Sequence (0040,0275)."""

    requested_procedure_id: str
    scheduled_procedure_step_id: str
    accession: str


class IgnoredValue(NamedTuple):
    """A value the index cannot hold: stored in the file, empty in the index."""

    keyword: str
    value: str
    why: str


@dataclass(frozen=True)
class Header:
    """The identifying and queryable attributes of one object."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    accession: str
    study_description: str
    referring_physician: str
    study_id: str
    modality: str
    series_number: int | None
    series_description: str
    series_date: str
    series_time: str
    body_part: str
    instance_number: int | None
    requests: tuple[Request, ...]
    problems: tuple[IgnoredValue, ...] = ()


class _Walker:
    """Bounds-checks element headers of one encoding over a buffer."""

    def __init__(self, data: Buffer, implicit: bool, little: bool) -> None:
        self.data = data
        self.implicit = implicit
        order = "<" if little else ">"
        self.tag_len = struct.Struct(order + "HHL")  # tag + 4-byte length (implicit, items)
        self.short = struct.Struct(order + "HH2sH")  # explicit VR, 2-byte length
        self.long = struct.Struct(order + "HH2s2xL")  # explicit VR, 4-byte length
        # Top-level elements the index keeps: tag -> (element start, value start, end).
        self.kept: dict[int, tuple[int, int, int]] = {}

    def _truncated(self, pos: int, what: str) -> InvalidObject:
        return InvalidObject(f"truncated dataset: {what} at byte {pos} runs past the end ({len(self.data)} bytes)")

    def dataset(self, pos: int, end: int, implicit: bool, depth: int, in_item: bool) -> int:
        """Walk elements from *pos*; return the position after the dataset."""
        if depth > MAX_DEPTH:
            raise InvalidObject(f"sequences nested deeper than {MAX_DEPTH} levels")
        data = self.data
        while pos < end:
            if pos + 8 > end:
                raise self._truncated(pos, "element header")
            group, elem, length = self.tag_len.unpack_from(data, pos)
            tag = (group << 16) | elem
            if tag == ITEM_END and in_item:
                return pos + 8
            if group == 0xFFFE:
                raise InvalidObject(f"unexpected delimiter ({group:04X},{elem:04X}) at byte {pos}")
            vr = b""
            start = pos + 8
            if not implicit:
                _, _, vr, length = self.short.unpack_from(data, pos)
                if not (vr.isalpha() and vr.isupper()):
                    raise InvalidObject(f"element ({group:04X},{elem:04X}) at byte {pos} has no valid VR")
                if vr in LONG_VRS:
                    if pos + 12 > end:
                        raise self._truncated(pos, f"element ({group:04X},{elem:04X}) header")
                    _, _, _, length = self.long.unpack_from(data, pos)
                    start = pos + 12
            if length == UNDEFINED:
                if not implicit and vr not in (b"SQ", b"UN", b"OB", b"OW"):
                    raise InvalidObject(f"element ({group:04X},{elem:04X}) of VR {vr.decode()} has undefined length")
                # UN of undefined length holds implicit VR little endian items (PS3.5 6.2.2).
                after = self.items(start, end, implicit or vr == b"UN", depth + 1)
                if depth == 0 and tag in KEPT:
                    self.keep(tag, pos, start, after)
                pos = after
                continue
            if start + length > end:
                raise self._truncated(pos, f"element ({group:04X},{elem:04X}) of {length} bytes")
            if vr == b"SQ":
                self.items(start, start + length, implicit, depth + 1, defined=True)
            if depth == 0 and tag in KEPT:
                self.keep(tag, pos, start, start + length)
            pos = start + length
        if in_item:
            raise self._truncated(pos, "item without its delimiter")
        return pos

    def keep(self, tag: int, pos: int, start: int, end: int) -> None:
        if end - start > MAX_KEPT_VALUE:
            raise InvalidObject(
                f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {pos} has a value of {end - start} bytes, "
                f"more than the {MAX_KEPT_VALUE} pacsd reads"
            )
        self.kept[tag] = (pos, start, end)

    def items(self, pos: int, end: int, implicit: bool, depth: int, defined: bool = False) -> int:
        """Walk the items of a sequence (or pixel data fragments)."""
        data = self.data
        while pos < end:
            if pos + 8 > end:
                raise self._truncated(pos, "item header")
            group, elem, length = self.tag_len.unpack_from(data, pos)
            tag = (group << 16) | elem
            if tag == SEQUENCE_END and not defined:
                return pos + 8
            if tag != ITEM:
                raise InvalidObject(f"expected an item, found ({group:04X},{elem:04X}) at byte {pos}")
            if length == UNDEFINED:
                pos = self.dataset(pos + 8, end, implicit, depth, in_item=True)
            else:
                if pos + 8 + length > end:
                    raise self._truncated(pos, f"item of {length} bytes")
                pos += 8 + length
        if not defined:
            raise self._truncated(pos, "sequence without its delimiter")
        return pos


def inflate(data: Buffer, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Undo Deflated Explicit VR Little Endian (raw deflate, PS3.5 A.5),
    within the budgets of *limits*: a deflate bomb is refused with
    :class:`OverBudget` before it costs more than max_inflated_bytes."""
    try:
        return inflating.inflate(
            memoryview(data), limits.max_inflated_bytes, limits.max_inflate_ratio, limits.inflate_ratio_after
        )
    except inflating.InflateError as exc:
        raise InvalidObject(str(exc)) from None
    except BudgetExceeded as exc:
        raise OverBudget(exc.budget, str(exc)) from None


def check_structure(data: Buffer, implicit: bool, little: bool) -> dict[int, tuple[int, int, int]]:
    """Raise :class:`InvalidObject` unless *data* is a complete dataset.

    Returns where the kept top-level elements are: tag -> (element start,
    value start, end).
    """
    if not data:
        raise InvalidObject("empty dataset")
    walker = _Walker(data, implicit, little)
    try:
        walker.dataset(0, len(data), implicit, 0, in_item=False)
    except struct.error as exc:  # pragma: no cover - bounds are checked first
        raise InvalidObject(f"malformed dataset: {exc}") from None
    return walker.kept


def normalised(value: str, vr: str) -> str:
    """A text value as the index keeps it (and so as identity compares it):
    padding stripped; for a PN, trailing empty component groups too (they
    carry nothing: "Wang^XiaoDong=王^小東=")."""
    value = value.strip(" \0")
    return value.rstrip("=") if vr == "PN" else value


def _item_text(ds: Dataset, keyword: str) -> str:
    value: Any = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):  # VM > 1
        value = "\\".join(str(v) for v in value)
    return str(value).strip(" \0")


class _Values:
    """Decodes the kept elements' raw values; text by the object's own
    Specific Character Set, as pydicom would, but without building a
    Dataset (that was a quarter of the CPU of a store)."""

    def __init__(self, data: Buffer, kept: dict[int, tuple[int, int, int]]) -> None:
        self.data = data
        self.kept = kept
        self.problems: list[IgnoredValue] = []
        self.charset = self.text("SpecificCharacterSet")
        self.encodings = convert_encodings(self.charset.split("\\") if self.charset else None)

    def raw(self, keyword: str) -> bytes:
        where = self.kept.get(_TAGS[keyword])
        return b"" if where is None else bytes(self.data[where[1] : where[2]])

    def text(self, keyword: str) -> str:
        raw = self.raw(keyword)
        if raw.isascii() and b"\x1b" not in raw:  # 7-bit ISO 2022 text has escapes
            value = raw.decode("ascii")
        elif _VRS[keyword] == "PN":
            value = str(PersonName(raw, self.encodings))
        elif _VRS[keyword] in ("LO", "SH", "LT", "ST", "UT", "UC"):
            value = decode_bytes(raw, self.encodings, TEXT_VR_DELIMS)
        else:
            raise InvalidObject(f"{keyword} holds bytes outside the default character repertoire")
        return normalised(value, _VRS[keyword])

    def _plain(self, keyword: str) -> str | None:
        """An IS/DA/TM value as text, or None (a problem noted) if it holds
        bytes these VRs never do."""
        raw = self.raw(keyword).strip(b" \0")
        if raw.isascii():
            return raw.decode("ascii")
        self._ignore(keyword, raw.decode("ascii", "backslashreplace"), "not ASCII")
        return None

    def _ignore(self, keyword: str, value: str, why: str) -> None:
        # The value reaches the log: keep it short.
        self.problems.append(IgnoredValue(keyword, value[:MAX_LOGGED_VALUE], why))

    def integer(self, keyword: str) -> int | None:
        """An IS (PS3.5 6.2: a signed integer in -2^31..2^31-1), or None."""
        value = self._plain(keyword)
        if not value:
            return None
        if not _INTEGER.fullmatch(value):
            self._ignore(keyword, value, "not an integer string")
            return None
        number = int(value)
        if not INT_MIN <= number <= INT_MAX:
            self._ignore(keyword, value, "integer string outside -2^31..2^31-1")
            return None
        return number

    def date(self, keyword: str) -> str:
        """A DA as YYYYMMDD (the old YYYY.MM.DD form too), or '' if it is not a date."""
        value = self._plain(keyword)
        if not value:
            return ""
        normal = _normal_date(value)
        if normal is None:
            self._ignore(keyword, value, "not a date (YYYYMMDD)")
            return ""
        return normal

    def time(self, keyword: str) -> str:
        """A TM as HH[MM[SS[.F{1,6}]]] (colons of the old form dropped), or ''."""
        value = self._plain(keyword)
        if not value:
            return ""
        normal = _normal_time(value)
        if normal is None:
            self._ignore(keyword, value, "not a time (HHMMSS.FFFFFF)")
            return ""
        return normal

    def requests(self, implicit: bool, little: bool) -> tuple[Request, ...]:
        where = self.kept.get(_TAGS["RequestAttributesSequence"])
        if where is None:
            return ()
        element = read_dataset(BytesIO(self.data[where[0] : where[2]]), implicit, little)
        items = element.get("RequestAttributesSequence") or ()
        return tuple(
            Request(
                _item_text(item, "RequestedProcedureID"),
                _item_text(item, "ScheduledProcedureStepID"),
                _item_text(item, "AccessionNumber"),
            )
            for item in items
        )


# Cached: the objects of a study repeat the same few dates and times, and
# checking one was a fifth of reading a header.
@lru_cache(maxsize=1024)
def _normal_date(value: str) -> str | None:
    """*value* as YYYYMMDD if it is a calendar date, else None."""
    match = _DATE.fullmatch(value) or _OLD_DATE.fullmatch(value)
    if match is None:
        return None
    try:
        datetime.date(*map(int, match.groups()))
    except ValueError:
        return None
    return "".join(match.groups())


@lru_cache(maxsize=1024)
def _normal_time(value: str) -> str | None:
    """*value* without the old form's colons if it is a time of day, else None."""
    match = _TIME.fullmatch(value) or _OLD_TIME.fullmatch(value)
    if match is None or not _valid_time(*(int(part or 0) for part in match.groups()[:3])):
        return None
    return value.replace(":", "")


def _valid_time(hour: int, minute: int, second: int) -> bool:
    return hour <= 23 and minute <= 59 and second <= 60  # 60: a leap second


@lru_cache(maxsize=64)
def _encoding(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """(deflated, implicit VR, little endian) of a transfer syntax. Cached:
    building a pydicom UID validates it with a regex, 8 % of a store."""
    ts = UID(transfer_syntax)
    if not ts.is_transfer_syntax:
        raise InvalidObject(f"unknown transfer syntax {transfer_syntax}")
    return ts == DeflatedExplicitVRLittleEndian, ts.is_implicit_VR, ts.is_little_endian


def read_header(encoded: Buffer, transfer_syntax: str, limits: Limits = DEFAULT_LIMITS) -> Header:
    """Check *encoded* and return its :class:`Header`.

    *encoded* is the dataset as sent (no file meta), in *transfer_syntax*:
    bytes, a memoryview or an mmap, never copied whole (a deflated one is
    inflated, within the budgets of *limits*). A value the index cannot
    hold is left empty and named in ``Header.problems``.
    """
    deflated, implicit, little = _encoding(transfer_syntax)
    data = inflate(encoded, limits) if deflated else encoded
    kept = check_structure(data, implicit, little)
    try:
        v = _Values(data, kept)
        fields: dict[str, Any] = {
            "sop_class_uid": v.text("SOPClassUID"),
            "sop_instance_uid": v.text("SOPInstanceUID"),
            "study_uid": v.text("StudyInstanceUID"),
            "series_uid": v.text("SeriesInstanceUID"),
            "patient_id": v.text("PatientID"),
            "issuer": v.text("IssuerOfPatientID"),
            "patient_name": v.text("PatientName"),
            "birth_date": v.date("PatientBirthDate"),
            "sex": v.text("PatientSex"),
            "study_date": v.date("StudyDate"),
            "study_time": v.time("StudyTime"),
            "accession": v.text("AccessionNumber"),
            "study_description": v.text("StudyDescription"),
            "referring_physician": v.text("ReferringPhysicianName"),
            "study_id": v.text("StudyID"),
            "modality": v.text("Modality"),
            "series_number": v.integer("SeriesNumber"),
            "series_description": v.text("SeriesDescription"),
            "series_date": v.date("SeriesDate"),
            "series_time": v.time("SeriesTime"),
            "body_part": v.text("BodyPartExamined"),
            "instance_number": v.integer("InstanceNumber"),
            "requests": v.requests(implicit, little),
        }
        return Header(**fields, problems=tuple(v.problems))
    except InvalidObject:
        raise
    except Exception as exc:  # pydicom raises many types on garbage input
        raise InvalidObject(f"dataset cannot be decoded: {type(exc).__name__}: {exc}") from None
