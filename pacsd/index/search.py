"""C-FIND and retrieve selection, answered by SQL over the index.

An identifier becomes one SELECT: the level picks the joined tables, each
key with a value adds a condition from :mod:`pacsd.index.matching`, and
each requested key adds a column.

C-FIND matches are read in pages by the level's row id, each page in a
short read of its own whose connection goes back to the pool before its
responses are yielded: a client that stops reading (the server blocked in
send()) holds no read snapshot, so the WAL keeps being checkpointed, and a
cancelled query stops between pages.

Private, unknown and not-indexed keys are returned empty (PS3.4
C.4.1.1.3.1) and take no part in matching; group lengths are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apsw
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from pacsd.domain.errors import InvalidQuery
from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import StoredInstance
from pacsd.domain.query import (
    C_FIND,
    MODEL_LEVELS,
    UNIQUE_KEYS,
    InformationModel,
    Level,
    QueryOverBudget,
    SearchOptions,
    has_wildcard,
    query_level,
    require_unique_keys,
    text_value,
)
from pacsd.index import matching
from pacsd.index.attributes import ATTRIBUTES, REQUEST_ITEM_COLUMNS, Attribute, Kind
from pacsd.index.db import PAGE_ROWS, Reading, paged
from pacsd.index.dialect import SQLITE
from pacsd.index.matching import Condition

DEFAULT_MAX_VALUES = Limits().max_query_values

FROM = {
    Level.PATIENT: "patient p",
    Level.STUDY: "study s JOIN patient p ON p.id = s.patient_pk",
    Level.SERIES: "series se JOIN study s ON s.id = se.study_pk JOIN patient p ON p.id = s.patient_pk",
    Level.IMAGE: (
        "instance i JOIN series se ON se.id = i.series_pk JOIN study s ON s.id = se.study_pk"
        " JOIN patient p ON p.id = s.patient_pk"
    ),
}
ROW_ID = {Level.PATIENT: "p.id", Level.STUDY: "s.id", Level.SERIES: "se.id", Level.IMAGE: "i.id"}
NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}
_P = SQLITE.param

# A short read of the index: a pooled connection, given back on exit.


def _value_count(value: Any) -> int:
    if isinstance(value, (list, MultiValue)):
        return len(value)
    if isinstance(value, str):
        return value.count("\\") + 1
    return 1


def check_list_lengths(identifier: Dataset, max_values: int) -> None:
    """Raise QueryOverBudget (``max_query_values``) if a matching key, or a
    key of a sequence item, lists more than *max_values* values."""
    for elem in identifier:
        if elem.VR == "SQ":
            for item in elem.value or ():
                check_list_lengths(item, max_values)
        elif elem.keyword in ATTRIBUTES or elem.keyword in REQUEST_ITEM_COLUMNS:
            count = _value_count(elem.value)
            if count > max_values:
                raise QueryOverBudget(
                    "max_query_values",
                    f"{elem.keyword} lists {count} values, more than {max_values} (max_query_values)",
                )


def condition(attribute: Attribute, value: str, fuzzy_names: bool = False) -> Condition | None:
    """The matching condition for one key, by its kind."""
    kind = attribute.kind
    if kind is Kind.PN and fuzzy_names:
        return matching.person_name_prefixes(attribute.match_columns, value)
    if kind is Kind.UID:
        return matching.uid_list(attribute.sql, value)
    if kind is Kind.TEXT:
        return matching.text(attribute.sql, value)
    if kind is Kind.PN:
        return matching.person_name(attribute.match_columns, value)
    if kind is Kind.DATE:
        return matching.date_range(attribute.sql, value)
    if kind is Kind.TIME:
        return matching.time_range(attribute.sql, value)
    if kind is Kind.INT:
        return matching.integer(attribute.sql, value)
    if kind is Kind.MULTI:
        inner = matching.text(attribute.match_columns[0], value)
        return None if inner is None else Condition(attribute.match_sql.format(cond=inner.sql), inner.params)
    return None  # counts are returned, never matched


def _request_condition(items: Sequence) -> tuple[Condition | None, list[str]]:
    """Sequence matching on Request Attributes Sequence (C.2.2.2.6): a series
    matches if one of its items matches every key of the query item."""
    if not items:
        return None, list(REQUEST_ITEM_COLUMNS)
    if len(items) > 1:
        raise InvalidQuery("a sequence key may hold at most one item")
    item = items[0]
    requested = [k for k in REQUEST_ITEM_COLUMNS if k in item]
    parts = []
    for keyword in requested:
        c = matching.text(REQUEST_ITEM_COLUMNS[keyword], text_value(item.get(keyword)))
        if c is not None:
            parts.append(c)
    if not parts:
        return None, requested
    inner = matching.both(parts)
    sql = f"EXISTS (SELECT 1 FROM series_request rq WHERE rq.series_pk = se.id AND {inner.sql})"
    return Condition(sql, inner.params), requested


Returned = tuple[DataElement, Attribute | None, int | None]


@dataclass
class _Plan:
    columns: list[str]  # the first is the level's row id
    level: Level
    where: Condition
    # (the identifier's element, its attribute or None, column index or None), in request order
    returned: list[Returned]
    request_keys: list[str] | None  # RequestAttributesSequence item keys, if asked
    request_series: int  # column holding the series id for those items

    def _select(self) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {FROM[self.level]} WHERE {self.where.sql}"

    def all(self) -> tuple[str, list[Any]]:
        return f"{self._select()} ORDER BY {ROW_ID[self.level]}", self.where.params

    def page(self, after: int, rows: int) -> tuple[str, list[Any]]:
        """The next *rows* matches whose row id is above *after*."""
        row_id = ROW_ID[self.level]
        sql = f"{self._select()} AND {row_id} > {_P} ORDER BY {row_id} LIMIT {_P}"
        return sql, [*self.where.params, after, rows]


def _is_group_length(elem: DataElement) -> bool:
    return bool(elem.tag.element == 0)


def _plan(identifier: Dataset, level: Level, select: list[str], options: SearchOptions = C_FIND) -> _Plan:
    columns = [ROW_ID[level], *select]
    conditions: list[Condition] = []
    returned: list[Returned] = []
    request_keys, request_series = None, 0
    for elem in identifier:
        keyword = elem.keyword
        if keyword in NOT_KEYS or elem.tag.group == 0x0002 or _is_group_length(elem):
            continue  # group lengths (older SCUs send them) are not keys
        attribute = ATTRIBUTES.get(keyword)
        if attribute is None or attribute.level > level:
            if not options.strict:
                returned.append((elem, None, None))  # returned empty
            elif elem.VR != "SQ" and text_value(elem.value).strip(" *"):
                name = keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
                scope = "at all" if attribute is None else f"at the {level.name} level"
                raise InvalidQuery(f"{name} cannot be matched {scope}")
            continue  # strict: a key the index does not hold is left out
        if attribute.kind is Kind.SEQUENCE:
            c, request_keys = _request_condition(elem.value or Sequence())
            request_series = len(columns)
            columns.append("se.id")
        else:
            if options.strict and attribute.kind is Kind.COUNT and text_value(elem.value).strip(" *"):
                raise InvalidQuery(f"{keyword} is computed: it is returned, and cannot be matched")
            try:
                c = condition(attribute, text_value(elem.value), options.fuzzy_names)
            except InvalidQuery as exc:
                raise InvalidQuery(f"{keyword}: {exc}") from None
            returned.append((elem, attribute, len(columns)))
            columns.append(attribute.sql)
        if c is not None:
            conditions.append(c)
    where = matching.both(conditions) if conditions else Condition("1")
    return _Plan(columns, level, where, returned, request_keys, request_series)


def _value(attribute: Attribute, raw: Any) -> Any:
    if attribute.kind is Kind.MULTI:
        return raw.split(",") if raw else None
    if raw is None or raw == "":
        return None
    return raw


def _requests(conn: apsw.Connection, series_pk: int, keys: list[str]) -> Sequence:
    columns = ", ".join(REQUEST_ITEM_COLUMNS[k] for k in keys) or "1"
    rows = conn.execute(
        f"SELECT {columns} FROM series_request rq WHERE rq.series_pk = {_P} ORDER BY rq.id", (series_pk,)
    )
    items = Sequence()
    for row in rows:
        item = Dataset()
        for keyword, value in zip(keys, row, strict=False):
            setattr(item, keyword, value or None)
        items.append(item)
    return items


def find(
    reading: Reading,
    identifier: Dataset,
    model: InformationModel,
    max_values: int = DEFAULT_MAX_VALUES,
    page_rows: int = PAGE_ROWS,
    options: SearchOptions = C_FIND,
) -> Iterator[Dataset]:
    """Yield one response identifier per match of *identifier*; reads the
    index a page at a time, each in a read of its own from *reading* (no
    read is open while it yields)."""
    level = query_level(identifier, model)
    if not options.relational:
        require_unique_keys(identifier, level, model)
    check_list_lengths(identifier, max_values)
    plan = _plan(identifier, level, [], options)
    if options.expected:
        page_rows = min(page_rows, options.expected)
    return paged(reading, plan.page, lambda conn, row: _response(conn, plan, row), page_rows)


def _response(conn: apsw.Connection, plan: _Plan, row: Any) -> Dataset:
    response = Dataset()
    response.QueryRetrieveLevel = plan.level.name
    for elem, attribute, index in plan.returned:
        if attribute is None or index is None:
            _set_empty(response, elem)
        else:
            response.add_new(elem.tag, dictionary_VR(elem.tag), _value(attribute, row[index]))
    if plan.request_keys is not None:
        response.RequestAttributesSequence = _requests(conn, row[plan.request_series], plan.request_keys)
    return response


def _is_private_creator(tag: BaseTag) -> bool:
    return bool(tag.is_private and 0x0010 <= tag.element <= 0x00FF)


def _set_empty(response: Dataset, elem: DataElement) -> None:
    """A key pacsd does not match on, returned empty as it came (a private
    creator keeps its value, so the private keys after it stay readable)."""
    if _is_private_creator(elem.tag):
        response.add_new(elem.tag, elem.VR, elem.value)
    elif elem.VR == "SQ":
        response.add_new(elem.tag, "SQ", [])
    else:
        response.add_new(elem.tag, elem.VR, None)


RELATIONAL_KEYS = ("AccessionNumber", "PatientID")  # what may name studies instead of their UIDs


def _relational_keys(identifier: Dataset, level: Level, key: str) -> Dataset:
    """The keys of a STUDY-level retrieve that names no StudyInstanceUID;
    InvalidQuery if there are none (or at another level)."""
    keys = Dataset()
    if level == Level.STUDY:
        for keyword in RELATIONAL_KEYS:
            value = text_value(identifier.get(keyword)).strip()
            if value and has_wildcard(value):
                raise InvalidQuery(f"{keyword} must be given without wildcards to retrieve studies by it")
            if value:
                keys.add(identifier[keyword])
        if len(keys):
            return keys
        raise InvalidQuery(f"{key} (or {' or '.join(RELATIONAL_KEYS)}) is required to retrieve at the STUDY level")
    raise InvalidQuery(f"{key} is required to retrieve at the {level.name} level")


def instances(
    conn: apsw.Connection, identifier: Dataset, model: InformationModel, max_values: int = DEFAULT_MAX_VALUES
) -> list[StoredInstance]:
    """The stored instances a C-MOVE/C-GET *identifier* asks for.

    Only the unique keys of the retrieve level and the levels above it take
    part (PS3.4 C.4.2.2.1); the retrieve level's own key must have a value.
    At the STUDY level, studies may instead be named by AccessionNumber
    and/or PatientID (relational retrieve, as workstations send it and
    Orthanc accepts), each a value without wildcards. A list longer than
    *max_values* is QueryOverBudget (an InvalidQuery).
    """
    level = query_level(identifier, model)
    key = UNIQUE_KEYS[level]
    check_list_lengths(identifier, max_values)
    if not text_value(identifier.get(key)).strip():
        keys = _relational_keys(identifier, level, key)
    else:
        keys = Dataset()
        for above in MODEL_LEVELS[model]:
            keyword = UNIQUE_KEYS[above]
            if above <= level and keyword in identifier:
                keys.add(identifier[keyword])
    if level in (Level.PATIENT, Level.STUDY) and "PatientID" in keys and "IssuerOfPatientID" in identifier:
        keys.add(identifier["IssuerOfPatientID"])
    plan = _plan(keys, Level.IMAGE, ["i.sop_uid", "i.sop_class_uid", "i.transfer_syntax", "i.path"])
    return [StoredInstance(*row[1:5]) for row in conn.execute(*plan.all())]
