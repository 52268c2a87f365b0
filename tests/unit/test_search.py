"""Search plans against a real SQLite index in tmp_path: lists of any
length, and the budget on them (moved from tests/e2e/test_find.py)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from pacsd.domain.errors import InvalidQuery
from pacsd.domain.query import InformationModel
from pacsd.index import matching
from pacsd.index.sqlite import SqliteIndex


@pytest.mark.parametrize("name", ["*^", "*^^^", "^", "=", "*^*=*", " ^ = ", "*"])
def test_all_wildcard_names_are_universal(name: str) -> None:
    assert matching.person_name(("a", "b", "c"), name) is None


def test_a_list_is_one_parameter_whatever_its_length() -> None:
    condition = matching.text("s.accession", "\\".join(f"A{n}" for n in range(5000)) + "\\B*\\C?")
    assert condition is not None and len(condition.params) == 2 and "json_each" in condition.sql


def test_retrieve_selection_of_long_lists(index: SqliteIndex) -> None:
    keys = Dataset()
    keys.QueryRetrieveLevel = "IMAGE"
    keys.SOPInstanceUID = [f"1.2.3.{n}" for n in range(40_000)]  # past SQLite's 32 766 variables
    assert index.instances(keys, InformationModel.STUDY_ROOT, 40_000) == []
    with pytest.raises(InvalidQuery, match="SOPInstanceUID lists 40000 values.*max_query_values"):
        index.instances(keys, InformationModel.STUDY_ROOT, 39_999)
