"""The MPPS use cases: a modality reports a procedure step it started
(N-CREATE) and its progress and end (N-SET). Each is one unit of work that
also moves the worklist items it performs: IN PROGRESS makes them STARTED,
COMPLETED and DISCONTINUED end them the same way. A step for a patient on
no worklist (an unscheduled exam) still gets its patient, by key."""

from __future__ import annotations

from pydicom.dataset import Dataset

from pacsd import log
from pacsd.domain.errors import MppsNoSuchInstance, Refusal
from pacsd.domain.mpps import STEP_STATUS, apply_set, check_create, check_set, status_of, steps
from pacsd.ports import Index, IndexTransaction, LogFields

_log = log.get("pacsd.mpps")


def _follow(tx: IndexTransaction, ds: Dataset) -> list[str]:
    """Set the referenced worklist items' status from the MPPS's; the
    referenced items that are not on the worklist."""
    status = STEP_STATUS[status_of(ds)]
    return [
        f"{step.study_uid}/{step.sps_id}"
        for step in steps(ds)
        if tx.set_worklist_status(step.study_uid, step.sps_id, status) is None
    ]


def create(index: Index, sop_uid: str, ds: Dataset, log_fields: LogFields) -> None:
    try:
        check_create(ds)

        def work(tx: IndexTransaction) -> list[str]:
            tx.add_mpps(sop_uid, ds)
            return _follow(tx, ds)

        unscheduled = index.write(work, lambda _: None)
    except Refusal as exc:
        _log.warning("mpps_refused", sop_instance_uid=sop_uid, operation="N-CREATE", reason=str(exc), **log_fields)
        raise
    _log.info("mpps_created", sop_instance_uid=sop_uid, status=status_of(ds), steps=len(steps(ds)),
              not_on_worklist=unscheduled, **log_fields)  # fmt: skip


def update(index: Index, sop_uid: str, modification: Dataset, log_fields: LogFields) -> Dataset:
    def work(tx: IndexTransaction) -> Dataset:
        current = tx.mpps(sop_uid)
        if current is None:
            raise MppsNoSuchInstance(f"no MPPS with SOP Instance UID {sop_uid}")
        check_set(current, modification)  # under the write lock: two N-SETs cannot both pass
        updated = apply_set(current, modification)
        tx.update_mpps(sop_uid, updated)
        _follow(tx, updated)
        return updated

    try:
        updated = index.write(work, lambda _: None)
    except Refusal as exc:
        _log.warning("mpps_refused", sop_instance_uid=sop_uid, operation="N-SET", reason=str(exc), **log_fields)
        raise
    _log.info("mpps_updated", sop_instance_uid=sop_uid, status=status_of(updated), **log_fields)
    return updated
