"""The Query/Retrieve information model, as rules that hold for any
protocol and any index: levels, unique keys, what a valid identifier
needs. (Which attributes can be matched, and how, is the index's.)"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pacsd.domain.errors import InvalidQuery
from pacsd.domain.limits import BudgetExceeded


class Level(IntEnum):
    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3


class InformationModel(Enum):
    """A Query/Retrieve information model (PS3.4 C.6): which levels it has."""

    PATIENT_ROOT = "patient"
    STUDY_ROOT = "study"


# The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEYS = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}

# Levels each information model offers.
MODEL_LEVELS = {
    InformationModel.PATIENT_ROOT: (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE),
    InformationModel.STUDY_ROOT: (Level.STUDY, Level.SERIES, Level.IMAGE),
}


@dataclass(frozen=True)
class SearchOptions:
    """How a query is matched beyond C-FIND's rules (DICOMweb asks for these;
    every flag defaults off, which is C-FIND)."""

    # PN keys: each word of the value matches a prefix of any name component,
    # case-insensitive ("jo" finds "Doe^John"); a value with wildcards is
    # matched as usual.
    fuzzy_names: bool = False
    # The unique keys of the levels above are not required (QIDO-RS /series,
    # /instances search the whole archive).
    relational: bool = False
    # A key the index cannot match at the level is InvalidQuery rather than
    # ignored, and a return key it cannot answer is left out of the
    # responses rather than returned empty.
    strict: bool = False
    # How many matches the caller will read at most (0: all of them): the
    # index then reads no larger pages (QIDO's offset + limit).
    expected: int = 0


C_FIND = SearchOptions()


class QueryOverBudget(InvalidQuery, BudgetExceeded):
    """An identifier larger than a budget allows: refused like any invalid
    query (0xA900 with the comment), and ``budget`` names the Limits key."""

    def __init__(self, budget: str, message: str) -> None:
        BudgetExceeded.__init__(self, budget, message)


def has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def text_value(value: Any) -> str:
    """An identifier element's value as one string (VM > 1 joined by '\\')."""
    if value is None:
        return ""
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def query_level(identifier: Dataset, model: InformationModel) -> Level:
    raw = text_value(identifier.get("QueryRetrieveLevel")).strip().upper()
    if not raw:
        raise InvalidQuery("Query/Retrieve Level (0008,0052) is missing")
    try:
        level = Level[raw]
    except KeyError:
        raise InvalidQuery(f"unknown Query/Retrieve Level {raw!r}") from None
    if level not in MODEL_LEVELS[model]:
        raise InvalidQuery(f"level {raw} is not part of the {model.value} root information model")
    return level


def require_unique_keys(identifier: Dataset, level: Level, model: InformationModel) -> None:
    """Hierarchical queries carry the unique key of every level above."""
    for above in MODEL_LEVELS[model]:
        if above >= level:
            break
        keyword = UNIQUE_KEYS[above]
        value = text_value(identifier.get(keyword)).strip()
        if not value:
            raise InvalidQuery(f"{keyword} is required for a {level.name} level query in this model")
        if has_wildcard(value):
            raise InvalidQuery(f"{keyword} must be given without wildcards for a {level.name} level query")
