"""DICOM attribute matching (PS3.4 C.2.2.2) as SQL conditions.

One function per matching type. Each takes the SQL column expression(s)
(from the attribute catalog, never from the request) and the query value,
and returns a :class:`Condition` whose values are bound parameters, or
None for universal matching.

Wildcards, lists and parameters are spelled by the dialect
(:mod:`pacsd.index.dialect`): in SQLite, GLOB, which has DICOM's
semantics (``*`` and ``?``, case-sensitive). Person names are compared in
a folded form (see :func:`fold_pn`) on both sides, which makes them
case-insensitive.

A list of values (VM > 1 in the query) is bound as one parameter (in
SQLite a JSON array read back with ``json_each``): the SQL is the same
whatever the list's length, so long lists meet neither the variable limit
nor the expression depth.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from pacsd.domain.errors import InvalidQuery
from pacsd.domain.query import has_wildcard
from pacsd.domain.worklist import valid_date, valid_time
from pacsd.index.dialect import SQLITE

DIALECT = SQLITE
_MARK = DIALECT.param  # the placeholder


@dataclass(frozen=True)
class Condition:
    sql: str
    params: list[Any] = field(default_factory=list)


def both(conditions: list[Condition], joiner: str = " AND ") -> Condition:
    return Condition(
        "(" + joiner.join(c.sql for c in conditions) + ")",
        [p for c in conditions for p in c.params],
    )


def glob_pattern(value: str) -> str:
    """A DICOM wildcard value as the dialect's pattern (GLOB: '[' escaped)."""
    return DIALECT.pattern(value)


def _split(value: str) -> list[str]:
    """Backslash-separated values (VM > 1 in the query), blanks dropped."""
    return [v.strip() for v in value.split("\\") if v.strip()]


def single_or_wildcard(column: str, value: str) -> Condition | None:
    """Single value matching, or wildcard matching if it has * or ?."""
    if value.strip("*") == "":
        return None  # "*" matches everything, empty values included
    if has_wildcard(value):
        return Condition(DIALECT.wildcard(column), [glob_pattern(value)])
    return Condition(f"{column} = {_MARK}", [value])


def any_of(column: str, values: list[Any]) -> Condition:
    """*column* equal to one of *values* (a list of any length)."""
    if len(values) == 1:
        return Condition(f"{column} = {_MARK}", values)
    return Condition(DIALECT.in_list(column), [DIALECT.list_param(values)])


def any_glob(column: str, patterns: list[str]) -> Condition:
    """*column* matching one of the wildcard *patterns* (a list of any length)."""
    if len(patterns) == 1:
        return Condition(DIALECT.wildcard(column), patterns)
    return Condition(DIALECT.wildcard_any(column), [DIALECT.list_param(patterns)])


def text(column: str, value: str) -> Condition | None:
    """LO/SH/CS/...: single value or wildcard; several values match any."""
    values = _split(value)
    if not values or any(v.strip("*") == "" for v in values):
        return None  # a "*" among them matches everything
    exact = [v for v in values if not has_wildcard(v)]
    patterns = [glob_pattern(v) for v in values if has_wildcard(v)]
    parts = ([any_of(column, exact)] if exact else []) + ([any_glob(column, patterns)] if patterns else [])
    return parts[0] if len(parts) == 1 else both(parts, " OR ")


def uid_list(column: str, value: str) -> Condition | None:
    """UIDs: single value or a list of UIDs; no wildcards (C.2.2.2.2)."""
    uids = _split(value)
    if not uids:
        return None
    for uid in uids:
        if has_wildcard(uid):
            raise InvalidQuery(f"wildcards are not allowed in a UID key: {uid!r}")
    return any_of(column, uids)


def integer(column: str, value: str) -> Condition | None:
    values = _split(value)
    if not values:
        return None
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        raise InvalidQuery(f"not an integer string: {value!r}") from None
    return any_of(column, numbers)


_DATE = re.compile(r"\d{8}\Z")
_TIME = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?\Z")


def date_value(value: str) -> str:
    """A DA query value checked and normalised (InvalidQuery if it is not one)."""
    value = value.strip().replace(".", "")  # ACR-NEMA YYYY.MM.DD
    if not _DATE.match(value) or not valid_date(value):  # 19961301 would match nothing: refused
        raise InvalidQuery(f"not a DICOM date (YYYYMMDD): {value!r}")
    return value


def time_value(value: str, upper: bool) -> str:
    """A TM query value checked and normalised; as an upper bound, a partial
    time is filled to the end of the span it names."""
    value = value.strip().replace(":", "")
    if not _TIME.match(value) or not valid_time(value):
        raise InvalidQuery(f"not a DICOM time (HHMMSS.FFFFFF): {value!r}")
    if upper:
        # "12" as an upper bound means up to 12:59:59.999999.
        full = "235959.999999"
        if len(value) < len(full):
            value = value + ("." if len(value) == 6 else "") + full[len(value) + (len(value) == 6) :]
    return value


def date_range(column: str, value: str) -> Condition | None:
    """DA: single value or range (either end open), C.2.2.2.5."""
    return _range(column, value, date_value, date_value)


def time_range(column: str, value: str) -> Condition | None:
    """TM: single value or range; a partial upper bound covers its span."""
    return _range(column, value, lambda v: time_value(v, False), lambda v: time_value(v, True))


def _range(column: str, value: str, low: Any, high: Any) -> Condition | None:
    value = value.strip()
    if not value or value == "-":
        return None
    if "-" not in value:
        if has_wildcard(value):
            return single_or_wildcard(column, value)
        if low is date_value:
            return Condition(f"{column} = {_MARK}", [low(value)])
        # A time without a range matches the whole span it names.
        return Condition(f"({column} >= {_MARK} AND {column} <= {_MARK})", [low(value), high(value)])
    start, end = value.split("-", 1)
    parts = [Condition(f"{column} != ''")]  # an empty value is never in a range
    if start.strip():
        parts.append(Condition(f"{column} >= {_MARK}", [low(start)]))
    if end.strip():
        parts.append(Condition(f"{column} <= {_MARK}", [high(end)]))
    return both(parts)


def _fold_group(group: str) -> str:
    group = unicodedata.normalize("NFC", group).casefold()
    components = [c.strip() for c in group.split("^")]
    while components and not components[-1]:
        components.pop()  # "Doe^John^^" is "Doe^John"
    return "^".join(components)


def fold_pn(value: str) -> tuple[str, str, str]:
    """PatientName as stored for matching: per component group, NFC and
    case-folded, spaces around components and trailing empty ones dropped."""
    groups = (value.split("=") + ["", ""])[:3]
    return _fold_group(groups[0]), _fold_group(groups[1]), _fold_group(groups[2])


def _universal_group(group: str) -> bool:
    """A component group that every name matches: each of its components
    empty or only '*' ("*^", "^^^", "*^*", "")."""
    return all(component.strip(" *") == "" for component in group.split("^"))


def person_name_prefixes(columns: tuple[str, ...], value: str) -> Condition | None:
    """PN fuzzy matching (PS3.18 ``fuzzymatching=true``): every word of
    *value* (split at '^', '=' and spaces) is the start of a word of some
    component, in any group, case-insensitive: "jo" and "doe jo" both find
    "Doe^John". A value with wildcards is matched as :func:`person_name`."""
    if has_wildcard(value):
        return person_name(columns, value)
    words = [w for w in re.split(r"[\^= ]+", unicodedata.normalize("NFC", value).casefold()) if w]
    if not words:
        return None
    conditions = []
    for word in words:
        # At the start of the value, of a component, or of a word in one.
        patterns = [glob_pattern(word) + "*", "*^" + glob_pattern(word) + "*", "* " + glob_pattern(word) + "*"]
        conditions.append(both([any_glob(column, patterns) for column in columns], " OR "))
    return both(conditions)


def person_name(columns: tuple[str, ...], value: str) -> Condition | None:
    """PN: single value or wildcard, case-insensitive.

    A query without '=' matches any component group (so a romanised or an
    ideographic name finds a patient stored with both); with '=' each given
    group must match its own column. Groups made only of '*', '^' and
    spaces are universal matching.
    """
    query_groups = value.split("=")
    if all(_universal_group(group) for group in query_groups):
        return None
    if len(query_groups) == 1:
        folded = _fold_group(value)
        matches = [single_or_wildcard(column, folded) for column in columns]
        return both([c for c in matches if c is not None], " OR ")
    conditions = []
    for column, group in zip(columns, query_groups, strict=False):
        if not _universal_group(group):
            condition = single_or_wildcard(column, _fold_group(group))
            if condition is not None:
                conditions.append(condition)
    return both(conditions) if conditions else None
