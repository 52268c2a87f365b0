"""C-FIND and retrieve selection, answered by SQL over the index.

An identifier becomes one SELECT: the level picks the joined tables, each
key with a value adds a condition from :mod:`pacsd.index.matching`, and
each requested key adds a column. Rows stream from the cursor, so a
cancelled query stops reading.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from pacsd import charset
from pacsd.errors import InvalidQuery
from pacsd.index import matching
from pacsd.index.attributes import (
    ATTRIBUTES,
    MODEL_LEVELS,
    REQUEST_ITEM_COLUMNS,
    UNIQUE_KEYS,
    Attribute,
    Kind,
    Level,
    Model,
)
from pacsd.index.matching import Condition
from pacsd.index.models import database

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


def text_value(value: Any) -> str:
    """An identifier element's value as one string (VM > 1 joined by '\\')."""
    if value is None:
        return ""
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def query_level(identifier: Dataset, model: Model) -> Level:
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


def require_unique_keys(identifier: Dataset, level: Level, model: Model) -> None:
    """Hierarchical queries carry the unique key of every level above."""
    for above in MODEL_LEVELS[model]:
        if above >= level:
            break
        keyword = UNIQUE_KEYS[above]
        value = text_value(identifier.get(keyword)).strip()
        if not value:
            raise InvalidQuery(f"{keyword} is required for a {level.name} level query in this model")
        if matching.has_wildcard(value):
            raise InvalidQuery(f"{keyword} must be given without wildcards for a {level.name} level query")


def condition(attribute: Attribute, value: str) -> Condition | None:
    """The matching condition for one key, by its kind."""
    kind = attribute.kind
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


@dataclass
class _Plan:
    sql: str
    params: list[Any]
    # (keyword, attribute or None, column index or None), in request order
    returned: list[tuple[str, Attribute | None, int | None]]
    request_keys: list[str] | None  # RequestAttributesSequence item keys, if asked
    request_series: int  # column holding the series id for those items


def _plan(identifier: Dataset, level: Level, select: list[str]) -> _Plan:
    columns = [ROW_ID[level], *select]
    conditions: list[Condition] = []
    returned: list[tuple[str, Attribute | None, int | None]] = []
    request_keys, request_series = None, 0
    for elem in identifier:
        keyword = elem.keyword
        if keyword in NOT_KEYS or elem.tag.group == 0x0002:
            continue
        attribute = ATTRIBUTES.get(keyword)
        if attribute is None or attribute.level > level:
            returned.append((keyword or str(elem.tag), None, None))  # returned empty
            continue
        if attribute.kind is Kind.SEQUENCE:
            c, request_keys = _request_condition(elem.value or Sequence())
            request_series = len(columns)
            columns.append("se.id")
        else:
            c = condition(attribute, text_value(elem.value))
            returned.append((keyword, attribute, len(columns)))
            columns.append(attribute.sql)
        if c is not None:
            conditions.append(c)
    where = matching.both(conditions) if conditions else Condition("1")
    sql = f"SELECT {', '.join(columns)} FROM {FROM[level]} WHERE {where.sql} ORDER BY {ROW_ID[level]}"
    return _Plan(sql, where.params, returned, request_keys, request_series)


def _value(attribute: Attribute, raw: Any) -> Any:
    if attribute.kind is Kind.MULTI:
        return raw.split(",") if raw else None
    if raw is None or raw == "":
        return None
    return raw


def _requests(series_pk: int, keys: list[str]) -> Sequence:
    columns = ", ".join(REQUEST_ITEM_COLUMNS[k] for k in keys) or "1"
    rows = database.execute_sql(
        f"SELECT {columns} FROM series_request rq WHERE rq.series_pk = ? ORDER BY rq.id", (series_pk,)
    )
    items = Sequence()
    for row in rows:
        item = Dataset()
        for keyword, value in zip(keys, row, strict=False):
            setattr(item, keyword, value or None)
        items.append(item)
    return items


def find(identifier: Dataset, model: Model, retrieve_ae: str) -> Iterator[Dataset]:
    """Yield one response identifier per match of *identifier*."""
    level = query_level(identifier, model)
    require_unique_keys(identifier, level, model)
    plan = _plan(identifier, level, [])
    requested_charset = charset.requested(identifier)
    cursor = database.execute_sql(plan.sql, plan.params)
    for row in cursor:
        response = Dataset()
        response.QueryRetrieveLevel = level.name
        response.RetrieveAETitle = retrieve_ae
        for keyword, attribute, index in plan.returned:
            value = None if attribute is None or index is None else _value(attribute, row[index])
            _set(response, identifier, keyword, value)
        if plan.request_keys is not None:
            response.RequestAttributesSequence = _requests(row[plan.request_series], plan.request_keys)
        charset.declare(response, requested_charset)
        yield response


def _set(response: Dataset, identifier: Dataset, keyword: str, value: Any) -> None:
    tag = tag_for_keyword(keyword)
    if tag is not None:
        response.add_new(tag, dictionary_VR(tag), value)
        return
    # A private or unknown tag: echo it back empty, as it came.
    original = identifier[keyword]
    response.add_new(original.tag, original.VR, [] if original.VR == "SQ" else None)


@dataclass(frozen=True)
class StoredInstance:
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: str  # relative to data_dir/files


def instances(identifier: Dataset, model: Model) -> list[StoredInstance]:
    """The stored instances a C-MOVE/C-GET *identifier* asks for.

    Only the unique keys of the retrieve level and the levels above it take
    part (PS3.4 C.4.2.2.1); the retrieve level's own key must have a value.
    """
    level = query_level(identifier, model)
    key = UNIQUE_KEYS[level]
    if not text_value(identifier.get(key)).strip():
        raise InvalidQuery(f"{key} is required to retrieve at the {level.name} level")
    keys = Dataset()
    for above in MODEL_LEVELS[model]:
        keyword = UNIQUE_KEYS[above]
        if above <= level and keyword in identifier:
            keys.add(identifier[keyword])
    if level == Level.PATIENT and "IssuerOfPatientID" in identifier:
        keys.add(identifier["IssuerOfPatientID"])
    plan = _plan(keys, Level.IMAGE, ["i.sop_uid", "i.sop_class_uid", "i.transfer_syntax", "i.path"])
    return [StoredInstance(*row[1:5]) for row in database.execute_sql(plan.sql, plan.params)]
