"""DICOM matching rules (PS3.4 C.2.2.2) as SQL conditions: the SQL and its
bound values, and what the condition selects from a real SQLite table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from pacsd.domain.errors import InvalidQuery
from pacsd.index import matching
from pacsd.index.matching import Condition, fold_pn

PN_COLUMNS = ("pn_alphabetic", "pn_ideographic", "pn_phonetic")


class Table:
    """One SQLite table in tmp_path holding the values a condition is tried on."""

    def __init__(self, path: Path) -> None:
        self.db = apsw.Connection(str(path))
        self.db.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL DEFAULT '', n INTEGER,"
            + ", ".join(f" {c} TEXT NOT NULL DEFAULT ''" for c in PN_COLUMNS)
            + ")"
        )

    def matches(self, values: list[str], condition: Condition | None) -> list[str]:
        """Of *values* stored in column v, those *condition* selects (None: all)."""
        self.db.execute("DELETE FROM t")
        for value in values:
            self.db.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return self._select("v", condition)

    def names(self, names: list[str], condition: Condition | None) -> list[str]:
        """Of person *names*, stored folded as the index does, those selected."""
        self.db.execute("DELETE FROM t")
        for name in names:
            self.db.execute(f"INSERT INTO t (v, {', '.join(PN_COLUMNS)}) VALUES (?, ?, ?, ?)", (name, *fold_pn(name)))
        return self._select("v", condition)

    def numbers(self, numbers: list[int], condition: Condition | None) -> list[int]:
        self.db.execute("DELETE FROM t")
        for number in numbers:
            self.db.execute("INSERT INTO t (n) VALUES (?)", (number,))
        return self._select("n", condition)

    def _select(self, column: str, condition: Condition | None) -> list[str] | list[int]:
        where = f" WHERE {condition.sql}" if condition is not None else ""
        return [
            row[0]
            for row in self.db.execute(
                f"SELECT {column} FROM t{where} ORDER BY id", condition.params if condition else ()
            )
        ]


@pytest.fixture
def table(tmp_path: Path) -> Iterator[Table]:
    t = Table(tmp_path / "matching.sqlite")
    yield t
    t.db.close()


# -- time ranges (C.2.2.2.5): a partial upper bound covers the span it names


@pytest.mark.parametrize(
    ("bound", "filled"),
    [
        ("10", "105959.999999"),
        ("1015", "101559.999999"),
        ("101530", "101530.999999"),
        ("101530.5", "101530.599999"),
        ("101530.123456", "101530.123456"),
        ("10:15", "101559.999999"),  # ACR-NEMA form
    ],
)
def test_time_upper_bound_is_filled_to_the_end_of_its_span(bound: str, filled: str) -> None:
    assert matching.time_range("t", f"-{bound}") == Condition("(t != '' AND t <= ?)", [filled])


def test_time_open_upper_end_takes_the_lower_bound_as_given() -> None:
    assert matching.time_range("t", "1015-") == Condition("(t != '' AND t >= ?)", ["1015"])


def test_time_range_both_ends() -> None:
    assert matching.time_range("t", "08-1015") == Condition("(t != '' AND t >= ? AND t <= ?)", ["08", "101559.999999"])


def test_a_single_time_matches_the_whole_span_it_names() -> None:
    assert matching.time_range("t", "10") == Condition("(t >= ? AND t <= ?)", ["10", "105959.999999"])


def test_time_upper_bound_in_sqlite(table: Table) -> None:
    stored = ["1014", "101500", "101559", "101559.999999", "1016", "101600", "0930", ""]
    assert table.matches(stored, matching.time_range("t.v", "-1015")) == [
        "1014", "101500", "101559", "101559.999999", "0930"
    ]  # fmt: skip


def test_single_hour_in_sqlite(table: Table) -> None:
    stored = ["0959.999", "10", "1000", "103000.5", "105959.999999", "11", "110000", ""]
    assert table.matches(stored, matching.time_range("t.v", "10")) == ["10", "1000", "103000.5", "105959.999999"]


def test_open_upper_time_range_in_sqlite(table: Table) -> None:
    stored = ["1014", "101459.9", "1015", "101500", "2359", ""]
    assert table.matches(stored, matching.time_range("t.v", "1015-")) == ["1015", "101500", "2359"]


@pytest.mark.parametrize("value", ["", "-", "  "])
def test_empty_time_is_universal(value: str) -> None:
    assert matching.time_range("t", value) is None


@pytest.mark.parametrize("value", ["10a", "1-2", "101530.1234567", "-10:1"])
def test_malformed_time_is_refused(value: str) -> None:
    with pytest.raises(InvalidQuery):
        matching.time_range("t", value)


# -- date ranges


def test_single_date_is_equality() -> None:
    assert matching.date_range("d", "20200131") == Condition("d = ?", ["20200131"])


def test_acr_nema_date_is_read_without_its_dots() -> None:
    assert matching.date_range("d", "2020.01.31") == Condition("d = ?", ["20200131"])


def test_date_range_conditions() -> None:
    assert matching.date_range("d", "20200101-20201231") == Condition(
        "(d != '' AND d >= ? AND d <= ?)", ["20200101", "20201231"]
    )
    assert matching.date_range("d", "-20201231") == Condition("(d != '' AND d <= ?)", ["20201231"])
    assert matching.date_range("d", "20200101-") == Condition("(d != '' AND d >= ?)", ["20200101"])


def test_date_ranges_in_sqlite(table: Table) -> None:
    stored = ["20191231", "20200101", "20200615", "20201231", "20210101", ""]
    assert table.matches(stored, matching.date_range("t.v", "20200101-20201231")) == stored[1:4]
    assert table.matches(stored, matching.date_range("t.v", "-20200101")) == stored[:2]
    assert table.matches(stored, matching.date_range("t.v", "20201231-")) == stored[3:5]
    assert table.matches(stored, matching.date_range("t.v", "20200615")) == ["20200615"]


def test_date_with_wildcard_is_wildcard_matching(table: Table) -> None:
    assert matching.date_range("d", "2020*") == Condition("d GLOB ?", ["2020*"])
    assert table.matches(["20200615", "20210615"], matching.date_range("t.v", "2020*")) == ["20200615"]


@pytest.mark.parametrize("value", ["2020", "20201", "2020-13", "x-20200101", "202001011"])
def test_malformed_date_is_refused(value: str) -> None:
    with pytest.raises(InvalidQuery):
        matching.date_range("d", value)


@pytest.mark.parametrize("value", ["", "-"])
def test_empty_date_is_universal(value: str) -> None:
    assert matching.date_range("d", value) is None


# -- wildcards (C.2.2.2.4) on GLOB: '[' is escaped, '%' and '_' are not special


def test_wildcards_become_glob() -> None:
    assert matching.single_or_wildcard("c", "AB*") == Condition("c GLOB ?", ["AB*"])
    assert matching.single_or_wildcard("c", "A?C") == Condition("c GLOB ?", ["A?C"])
    assert matching.single_or_wildcard("c", "ABC") == Condition("c = ?", ["ABC"])


def test_a_literal_bracket_is_escaped() -> None:
    assert matching.glob_pattern("A[1]*") == "A[[]1]*"
    assert matching.single_or_wildcard("c", "A[1]*") == Condition("c GLOB ?", ["A[[]1]*"])


@pytest.mark.parametrize("value", ["*", "**", ""])
def test_only_asterisks_or_nothing_is_universal(value: str) -> None:
    assert matching.single_or_wildcard("c", value) is None
    assert matching.text("c", value) is None


def test_wildcard_matching_in_sqlite(table: Table) -> None:
    stored = ["ABC", "ABD", "abc", "AB", "XABC", "A[1]X", "A1X", "A%X", "A_X", "AXX"]
    assert table.matches(stored, matching.text("t.v", "AB*")) == ["ABC", "ABD", "AB"]  # case-sensitive
    assert table.matches(stored, matching.text("t.v", "AB?")) == ["ABC", "ABD"]
    assert table.matches(stored, matching.text("t.v", "A[1]*")) == ["A[1]X"]  # not a character class
    assert table.matches(stored, matching.text("t.v", "A%*")) == ["A%X"]  # not LIKE's %
    assert table.matches(stored, matching.text("t.v", "A_?")) == ["A_X"]  # not LIKE's _
    assert table.matches(stored, matching.text("t.v", "A%X")) == ["A%X"]
    assert table.matches(stored, matching.text("t.v", "A_X")) == ["A_X"]


def test_several_text_values_match_any(table: Table) -> None:
    condition = matching.text("t.v", "ABC\\X*")
    assert condition == Condition("(t.v = ? OR t.v GLOB ?)", ["ABC", "X*"])
    assert table.matches(["ABC", "ABD", "XABC", "X"], condition) == ["ABC", "XABC", "X"]


def test_a_list_of_patterns_is_one_json_parameter(table: Table) -> None:
    condition = matching.text("t.v", "A*\\B*\\C?")
    assert condition is not None and condition.params == [json.dumps(["A*", "B*", "C?"])]
    assert table.matches(["A1", "B22", "C3", "C33", "D"], condition) == ["A1", "B22", "C3"]


def test_an_asterisk_among_text_values_is_universal() -> None:
    assert matching.text("c", "ABC\\*") is None


# -- UID lists (C.2.2.2.2)


def test_one_uid_is_equality() -> None:
    assert matching.uid_list("u", "1.2.3") == Condition("u = ?", ["1.2.3"])


def test_uid_list_is_one_json_parameter(table: Table) -> None:
    condition = matching.uid_list("t.v", "1.2.3\\1.2.5\\ 1.2.7 \\")
    assert condition == Condition("t.v IN (SELECT j.value FROM json_each(?) AS j)", ['["1.2.3", "1.2.5", "1.2.7"]'])
    assert table.matches(["1.2.3", "1.2.4", "1.2.5", "1.2.7", "1.2.33"], condition) == ["1.2.3", "1.2.5", "1.2.7"]


def test_a_long_uid_list_stays_one_parameter(table: Table) -> None:
    uids = [f"1.2.{n}" for n in range(5000)]
    condition = matching.uid_list("t.v", "\\".join(uids))
    assert condition is not None and len(condition.params) == 1
    assert table.matches(["1.2.4999", "1.2.5000"], condition) == ["1.2.4999"]


@pytest.mark.parametrize("value", ["", "\\", " \\ "])
def test_empty_uid_list_is_universal(value: str) -> None:
    assert matching.uid_list("u", value) is None


@pytest.mark.parametrize("value", ["1.2.*", "1.2.3\\1.?"])
def test_wildcards_in_uids_are_refused(value: str) -> None:
    with pytest.raises(InvalidQuery, match="wildcards are not allowed"):
        matching.uid_list("u", value)


# -- integers


def test_integers_match_any_of_the_list(table: Table) -> None:
    condition = matching.integer("t.n", "1\\3")
    assert condition is not None
    assert table.numbers([1, 2, 3, 13], condition) == [1, 3]
    assert matching.integer("n", "") is None
    with pytest.raises(InvalidQuery):
        matching.integer("n", "1\\x")


# -- person names: folded on both sides (case-insensitive), per component group


def test_fold_pn() -> None:
    assert fold_pn("Doe^John") == ("doe^john", "", "")
    assert fold_pn("DOE ^ John ^^") == ("doe^john", "", "")  # spaces and trailing empty components
    assert fold_pn("Straße^Jürgen") == ("strasse^jürgen", "", "")
    assert fold_pn("Yamada^Tarou=山田^太郎=やまだ^たろう") == ("yamada^tarou", "山田^太郎", "やまだ^たろう")
    assert fold_pn("=山田^太郎") == ("", "山田^太郎", "")
    # A decomposed é folds like the composed one (NFC).
    assert fold_pn("Ame\u0301lie") == fold_pn("Am\u00e9lie") == ("am\u00e9lie", "", "")


def test_person_name_without_groups_tries_every_group() -> None:
    assert matching.person_name(PN_COLUMNS, "DOE^J*") == Condition(
        "(pn_alphabetic GLOB ? OR pn_ideographic GLOB ? OR pn_phonetic GLOB ?)", ["doe^j*"] * 3
    )


def test_person_names_in_sqlite(table: Table) -> None:
    names = [
        "Doe^John",
        "DOE^JANE",
        "Doe^John^^^",
        "Doering^Ann",
        "Roe^John",
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
        "",
    ]

    def found(query: str) -> list[str]:
        return table.names(names, matching.person_name(PN_COLUMNS, query))

    assert found("doe^john") == ["Doe^John", "Doe^John^^^"]
    assert found("DOE^J*") == ["Doe^John", "DOE^JANE", "Doe^John^^^"]
    assert found("Doe*") == ["Doe^John", "DOE^JANE", "Doe^John^^^", "Doering^Ann"]
    assert found("山田*") == ["Yamada^Tarou=山田^太郎=やまだ^たろう"]  # any group, without '='
    assert found("=山田^太郎") == ["Yamada^Tarou=山田^太郎=やまだ^たろう"]
    assert found("山田^太郎=") == []  # '=': the first group is the alphabetic one


@pytest.mark.parametrize("value", ["", "*", "^", "*^*", "^^^", "=", "*=*=*", " * "])
def test_universal_person_names(value: str) -> None:
    assert matching.person_name(PN_COLUMNS, value) is None


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("jo", ["Doe^John", "Jones^Ann"]),  # a prefix of any component, case-insensitive
        ("JOHN", ["Doe^John"]),
        ("berg", ["van der Berg^Piet"]),  # a word inside a component
        ("doe jo", ["Doe^John"]),  # every word must find a component
        ("doe^ann", []),
        ("ohn", []),  # not a prefix
        ("yamada", ["Yamada^Tarou=山田^太郎"]),  # any component group
        ("山", ["Yamada^Tarou=山田^太郎"]),
        ("Jo*", ["Jones^Ann"]),  # wildcards: matched as without fuzzy matching
        ("*", None),
    ],
)
def test_fuzzy_person_names(table: Table, query: str, found: list[str] | None) -> None:
    names = ["Doe^John", "Jones^Ann", "van der Berg^Piet", "Yamada^Tarou=山田^太郎"]
    condition = matching.person_name_prefixes(PN_COLUMNS, query)
    assert table.names(names, condition) == (names if found is None else found)
