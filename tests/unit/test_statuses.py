"""The DIMSE status table and the retrieve's final-status decision, as pure rules."""

from __future__ import annotations

import pytest

from pacsd.dimse.suboperations import Tally, final_status
from pacsd.domain import errors
from pacsd.domain.outcomes import Result
from pacsd.wire import statuses


@pytest.mark.parametrize(
    ("refusal", "code"),
    [
        (errors.InvalidObject("truncated"), 0xC000),
        (errors.InvalidUID("bad UID"), 0xC001),
        (errors.RequestMismatch("other SOP instance"), 0xC002),
        (errors.OverBudget("max_inflate_ratio", "inflates too far"), 0xC003),
        (errors.SOPClassMismatch("other SOP class"), 0xA900),  # the subclass wins over RequestMismatch
        (errors.IdentityConflict("study of another patient"), 0xC010),
        (errors.NoFetchWaiting("no fetch is waiting"), 0xC011),
        (errors.StorageFailure("disk full"), 0xA700),
    ],
)
def test_each_refusal_has_one_status_and_keeps_its_comment(refusal: errors.Refusal, code: int) -> None:
    assert statuses.store_failure(refusal) == (code, str(refusal))


def test_anything_else_is_an_internal_error_named_by_its_type() -> None:
    assert statuses.store_failure(KeyError("x")) == (0x0110, "internal error: KeyError")
    assert statuses.store_failure(errors.Refusal("a refusal of no known kind")) == (0x0110, "internal error: Refusal")


def test_every_store_result_has_a_status() -> None:
    assert set(statuses.STORE_RESULTS) == set(Result)
    assert statuses.STORE_RESULTS[Result.DUPLICATE_KEPT] == 0xB006
    assert {statuses.STORE_RESULTS[r] for r in (Result.STORED, Result.ALREADY_STORED, Result.STAGED)} == {0x0000}


@pytest.mark.parametrize(
    ("status", "completed", "warning", "failed"),
    [
        (0x0000, 1, 0, 0),
        (0x0001, 0, 1, 0),  # PS3.7 C: a warning, not a failure
        (0xB000, 0, 1, 0),
        (0xB006, 0, 1, 0),
        (0xB001, 0, 1, 0),
        (0x0107, 0, 1, 0),
        (0x0116, 0, 1, 0),
        (0xA700, 0, 0, 1),
        (0xC000, 0, 0, 1),
        (0x0110, 0, 0, 1),
    ],
)
def test_sub_operations_are_counted_in_pynetdicom_categories(
    status: int, completed: int, warning: int, failed: int
) -> None:
    tally = Tally(1)
    tally.count(status, "1.2.3")
    assert (tally.completed, tally.warning, tally.failed) == (completed, warning, failed)
    assert tally.failed_uids == (["1.2.3"] if failed else [])


def _tally(
    total: int, completed: int = 0, failed: int = 0, warning: int = 0, unfetched: int = 0, notes: tuple[str, ...] = ()
) -> Tally:
    return Tally(total, completed, failed, warning, unfetched=unfetched, notes=list(notes))


@pytest.mark.parametrize(
    ("tally", "status"),
    [
        (_tally(3, completed=3), 0x0000),
        (_tally(0), 0x0000),  # nothing matched
        (_tally(3, completed=1), 0xFE00),  # two remain: cancelled
        (_tally(3, completed=2, failed=1), 0xB000),
        (_tally(3, completed=2, warning=1), 0xB000),
        (_tally(3, failed=3), 0xB000),  # every sub-operation failed: still "complete, with failures"
        (_tally(0, unfetched=4, notes=("upstream down",)), 0xA702),  # the proxy could fetch nothing
        (_tally(2, completed=2, unfetched=3, notes=("one study not fetched",)), 0xB000),
        (_tally(0, notes=("no SCP role for CT Image Storage",)), 0xA702),
    ],
)
def test_final_status(tally: Tally, status: int) -> None:
    assert final_status(tally) == status
