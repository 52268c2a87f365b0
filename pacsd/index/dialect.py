"""The SQL spellings that differ between SQLite and PostgreSQL, in one place.

Everything else in :mod:`pacsd.index` is SQL both understand. A second
backend supplies another :class:`Dialect`; the modules that build SQL
(matching, attributes, search, identity, writeahead, writer) take their
spellings from :data:`SQLITE` when their statements are built, at import
or construction, never per call: the store and C-FIND paths are hot.

Case-insensitive comparison is not among them: person names are folded in
Python (:func:`pacsd.index.matching.fold_pn`) on both sides, so matching
compares with ``=`` and wildcards only.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dialect(ABC):
    name: str
    param: str  # the bound-parameter placeholder
    begin_write: str  # starts a transaction that holds the write lock from its start

    @abstractmethod
    def wildcard(self, column: str) -> str:
        """*column* matching one bound pattern made by :meth:`pattern`."""

    @abstractmethod
    def pattern(self, value: str) -> str:
        """A DICOM wildcard value (``*``, ``?``) as a pattern for :meth:`wildcard`,
        every other character literal."""

    @abstractmethod
    def in_list(self, column: str) -> str:
        """*column* equal to one of a list bound as one parameter (:meth:`list_param`)."""

    @abstractmethod
    def wildcard_any(self, column: str) -> str:
        """*column* matching one of a list of patterns bound as one parameter."""

    @abstractmethod
    def list_param(self, values: Sequence[Any]) -> Any:
        """A list of any length as one bound parameter: the SQL stays the
        same whatever the length, so no variable limit or expression depth is met."""

    @abstractmethod
    def distinct_list(self, expression: str) -> str:
        """The distinct values of *expression* in a group, joined by ','."""

    def insert_returning_id(self, table: str, columns: Sequence[str], conflict: Sequence[str]) -> str:
        """Insert one row, or nothing if the *conflict* key exists; returns
        the new row's id (no row when it existed)."""
        marks = ", ".join([self.param] * len(columns))
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING id"
        )

    def insert(self, table: str, columns: Sequence[str]) -> str:
        marks = ", ".join([self.param] * len(columns))
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


class _Sqlite(Dialect):
    def wildcard(self, column: str) -> str:
        return f"{column} GLOB ?"

    def pattern(self, value: str) -> str:
        # GLOB has DICOM's semantics (``*``, ``?``, case-sensitive); only
        # '[' (a character class) is special besides, and '[[]' is a literal '['.
        return value.replace("[", "[[]")

    def in_list(self, column: str) -> str:
        return f"{column} IN (SELECT j.value FROM json_each(?) AS j)"

    def wildcard_any(self, column: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each(?) AS j WHERE {column} GLOB j.value)"

    def list_param(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))

    def distinct_list(self, expression: str) -> str:
        return f"GROUP_CONCAT(DISTINCT {expression})"


# PostgreSQL would be: param '%s', begin_write 'BEGIN' (then a row or
# advisory lock), wildcard "{column} LIKE %s ESCAPE '\\'" with '%', '_' and
# '\\' escaped and '*'/'?' turned into '%'/'_', in_list "{column} = ANY(%s)"
# with the list bound as an array, distinct_list "string_agg(DISTINCT x, ',')".
SQLITE = _Sqlite(name="sqlite", param="?", begin_write="BEGIN IMMEDIATE")
