"""QIDO-style search parameters (PS3.18 8.3.4) read into a Modality
Worklist identifier: top-level keys plus one Scheduled Procedure Step
Sequence item.

An attribute is named by keyword (``PatientID``) or tag (``00100020``);
an attribute inside a sequence by ``Sequence.Attribute``
(``ScheduledProcedureStepSequence.Modality``, ``00400100.00080060``).
The Scheduled Procedure Step's own attributes may also be named plainly
(``Modality=MR``), as a RIS thinks of them. A UI value may list UIDs
separated by commas.

:func:`qido` reads the parameters of a QIDO-RS search (PS3.18 10.6.1.2)
the same way, without sequences: matching keys, ``includefield``,
``fuzzymatching``, ``limit`` and ``offset``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from pacsd.domain import uid
from pacsd.domain.worklist import SPS
from pacsd.web.statuses import BAD_REQUEST, HttpError

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
# What a search answers besides the matching keys and ``includefield``
# ones (the Archive answers requested keys, as to a C-FIND): what a RIS
# shows of an item. An empty step in the query is answered whole.
RETURN_KEYS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyInstanceUID",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "RequestedProcedurePriority",
)
STEP_RETURN_KEYS = (
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledStationName",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepStatus",
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
    fields: list[tuple[str, str]] = []
    for name, value in params:
        if name == "includefield":  # may repeat, and list attributes separated by commas
            fields += [(name, field.strip()) for field in value.split(",") if field.strip() not in ("", "all")]
            continue
        if name in seen:
            raise _bad(name, f"parameter {name} given twice (list UIDs in one value, separated by commas)")
        seen.add(name)
        if name == "includedone":
            found.include_done = _boolean(name, value)
        elif name == "limit":
            found.limit = _integer(name, value, 1, MAX_LIMIT)
        elif name == "offset":
            found.offset = _integer(name, value, 0, 1 << 62)
        else:
            ds, attribute = _place(found.identifier, item, name, name)
            _put(ds, name, attribute, value)
    for param, field in fields:
        ds, attribute = _place(found.identifier, item, param, field)
        tag, _ = _attribute(param, attribute)
        if tag in ds:
            continue
        if dictionary_VR(tag) == "SQ":
            ds.add_new(tag, "SQ", [])  # answered whole
        else:
            _put(ds, param, attribute, "")
    _return_keys(found.identifier, RETURN_KEYS)
    if len(item):
        _return_keys(item, STEP_RETURN_KEYS)
    found.identifier.ScheduledProcedureStepSequence = [item]
    return found


def _place(top: Dataset, item: Dataset, param: str, name: str) -> tuple[Dataset, str]:
    """Which dataset (the top level or the step) *name* goes in, and the
    attribute's own name."""
    outer, _, inner = name.partition(".")
    _, keyword = _attribute(param, outer)
    if inner:
        if keyword != SPS:
            raise _bad(param, f"{param}: only attributes of {SPS} can be named inside a sequence")
        return item, inner
    return (item if keyword in SPS_KEYWORDS else top), outer


def _return_keys(ds: Dataset, keywords: tuple[str, ...]) -> None:
    for keyword in keywords:
        if keyword not in ds:
            ds.add_new(keyword, dictionary_VR(keyword), None)


def _attribute(param: str, name: str, controls: str = "includedone/limit/offset") -> tuple[int, str]:
    """(tag, keyword) of a keyword or an 8-digit tag."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        tag = int(name, 16)
        keyword = keyword_for_tag(tag)
        if not keyword:
            raise _bad(param, f"{param}: unknown tag ({name[:4]},{name[4:]})")
        return tag, keyword
    found = tag_for_keyword(name)
    if found is None:
        raise _bad(param, f"{param}: unknown parameter (not a DICOM keyword or tag, nor {controls})")
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


QIDO_CONTROLS = "includefield/fuzzymatching/limit/offset"


@dataclass
class QidoSearch:
    keys: Dataset = dataclasses.field(default_factory=Dataset)  # matching keys, by tag
    fields: list[int] = dataclasses.field(default_factory=list)  # includefield tags, in order
    include_all: bool = False  # includefield=all
    fuzzy: bool = False
    limit: int | None = None
    offset: int = 0


def qido(params: Iterable[tuple[str, str]]) -> QidoSearch:
    """The QIDO-RS search *params* ask for; HttpError (400) naming the
    parameter for an unknown attribute, a repeated one, a sequence, or a
    value that cannot be one of the attribute (a UI that is not a UID list).
    Which keys the level can match is the Archive's to say."""
    found = QidoSearch()
    seen: set[str] = set()
    for name, value in params:
        if name == "includefield":  # may repeat, and list attributes separated by commas
            for item in (v.strip() for v in value.split(",")):
                if item == "all":
                    found.include_all = True
                elif item:
                    found.fields.append(_attribute(name, item, QIDO_CONTROLS)[0])
            continue
        if name in seen:
            raise _bad(name, f"parameter {name} given twice (list UIDs in one value, separated by commas)")
        seen.add(name)
        if name == "fuzzymatching":
            found.fuzzy = _boolean(name, value)
        elif name == "limit":
            found.limit = _integer(name, value, 1, 1 << 62)
        elif name == "offset":
            found.offset = _integer(name, value, 0, 1 << 62)
        else:
            _qido_key(found.keys, name, value)
    return found


def _qido_key(ds: Dataset, param: str, value: str) -> None:
    if "." in param:
        raise _bad(param, f"{param}: attributes inside sequences cannot be searched")
    tag, keyword = _attribute(param, param, QIDO_CONTROLS)
    vr = dictionary_VR(tag).split(" or ")[0]
    if vr == "SQ":
        raise _bad(param, f"{param}: {keyword} is a sequence, which cannot be searched")
    if tag in ds:
        raise _bad(param, f"{param}: {keyword} given twice")
    if any(ord(c) < 0x20 and c != "\x1b" for c in value):
        raise _bad(param, f"{param}: control characters in the value")
    if vr == "UI":
        uids = [u.strip() for u in value.replace("\\", ",").split(",") if u.strip()]
        for one in uids:
            if not uid.is_valid(one):
                raise _bad(param, f"{param}: {one!r} is not a UID (a list of UIDs is separated by commas)")
        ds.add_new(tag, vr, uids[0] if len(uids) == 1 else uids or None)
        return
    try:
        ds.add_new(tag, vr, value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _bad(param, f"{param}: {value!r} is not a {vr} value ({exc})") from None
