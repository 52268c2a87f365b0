"""QIDO-style search parameters (PS3.18 8.3.4) read into a Modality
Worklist identifier: top-level keys plus one Scheduled Procedure Step
Sequence item.

An attribute is named by keyword (``PatientID``) or tag (``00100020``);
an attribute inside a sequence by ``Sequence.Attribute``
(``ScheduledProcedureStepSequence.Modality``, ``00400100.00080060``).
The Scheduled Procedure Step's own attributes may also be named plainly
(``Modality=MR``), as a RIS thinks of them. A UI value may list UIDs
separated by commas.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from pacsd.web.statuses import BAD_REQUEST, HttpError

SPS = "ScheduledProcedureStepSequence"
# The Scheduled Procedure Step module's attributes (PS3.4 K.6.1.2.2): a
# plain ``Modality=MR`` goes into the sequence item.
SPS_KEYWORDS = frozenset(
    (
        "ScheduledStationAETitle",
        "ScheduledStationName",
        "ScheduledProcedureStepLocation",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "ScheduledProcedureStepEndDate",
        "ScheduledProcedureStepEndTime",
        "Modality",
        "ScheduledPerformingPhysicianName",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepID",
        "ScheduledProcedureStepStatus",
        "CommentsOnTheScheduledProcedureStep",
        "PreMedication",
        "RequestedContrastAgent",
    )
)
MAX_LIMIT = 100_000


@dataclass
class Search:
    identifier: Dataset
    include_done: bool = False
    limit: int | None = None
    offset: int = 0


def search(params: Iterable[tuple[str, str]]) -> Search:
    """The search that query *params* ask for; HttpError (400) naming the
    parameter for an unknown attribute, a repeated one or a bad value."""
    found = Search(Dataset())
    item = Dataset()
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            raise _bad(name, f"parameter {name} given twice (list UIDs in one value, separated by commas)")
        seen.add(name)
        if name == "includedone":
            found.include_done = _boolean(name, value)
        elif name == "limit":
            found.limit = _integer(name, value, 1, MAX_LIMIT)
        elif name == "offset":
            found.offset = _integer(name, value, 0, 1 << 62)
        elif name == "includefield":
            continue  # every item is answered whole
        else:
            outer, _, inner = name.partition(".")
            tag, keyword = _attribute(name, outer)
            if inner:
                if keyword != SPS:
                    raise _bad(name, f"{name}: only attributes of {SPS} can be named inside a sequence")
                _put(item, name, inner, value)
            elif keyword in SPS_KEYWORDS:
                _put(item, name, outer, value)
            else:
                _put(found.identifier, name, outer, value)
    found.identifier.ScheduledProcedureStepSequence = [item]
    return found


def _attribute(param: str, name: str) -> tuple[int, str]:
    """(tag, keyword) of a keyword or an 8-digit tag."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        tag = int(name, 16)
        keyword = keyword_for_tag(tag)
        if not keyword:
            raise _bad(param, f"{param}: unknown tag ({name[:4]},{name[4:]})")
        return tag, keyword
    found = tag_for_keyword(name)
    if found is None:
        raise _bad(param, f"{param}: unknown parameter (not a DICOM keyword or tag, nor includedone/limit/offset)")
    return found, name


def _put(ds: Dataset, param: str, name: str, value: str) -> None:
    tag, keyword = _attribute(param, name)
    vr = dictionary_VR(tag).split(" or ")[0]
    if vr == "SQ":
        raise _bad(param, f"{param}: {keyword} is a sequence; name an attribute inside it ({keyword}.Attribute)")
    if "." in name:
        raise _bad(param, f"{param}: sequences nest one level only")
    if tag in ds:
        raise _bad(param, f"{param}: {keyword} given twice")
    if any(ord(c) < 0x20 and c not in "\x1b" for c in value):
        raise _bad(param, f"{param}: control characters in the value")
    if vr == "UI" and "," in value:
        ds.add_new(tag, vr, [uid.strip() for uid in value.split(",")])
    else:
        ds.add_new(tag, vr, value)


def _boolean(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise _bad(name, f"{name}: expected true or false, got {value!r}")
    return value.lower() == "true"


def _integer(name: str, value: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise _bad(name, f"{name}: expected an integer from {low} to {high}, got {value!r}")
    return int(value)


def _bad(param: str, message: str) -> HttpError:
    return HttpError(BAD_REQUEST, message, parameter=param)
