"""The worklist use cases: creating items for a RIS, answering modalities'
worklist queries, removing items and following their status.

Creating a batch is one unit of work: every item is checked first, and a
refusal of any leaves none of them (nor their patients) behind. The
patient is the one images of the same key land on; a name that differs
from the one on record is logged, not applied (the key decides who the
patient is; demographics change through an update, not a side effect).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacsd import log
from pacsd.domain import charset
from pacsd.domain.errors import InvalidWorklistItem, WorklistNotFound
from pacsd.domain.header import normalised
from pacsd.domain.worklist import SPS, WorklistEntry, WorklistItem, prepare
from pacsd.ports import Index, IndexTransaction, Watch

_log = log.get("pacsd.worklist")
NOT_KEYS = {"SpecificCharacterSet"}


def create(index: Index, given: list[Dataset]) -> list[WorklistEntry]:
    """Store every item of *given*, or none (InvalidWorklistItem,
    WorklistConflict, IdentityConflict)."""
    try:
        items = [item for n, ds in enumerate(given) for item in prepare(ds, n)]
    except InvalidWorklistItem as exc:
        _log.warning("worklist_refused", item=exc.index, attribute=exc.attribute, reason=str(exc))
        raise

    def work(tx: IndexTransaction) -> list[tuple[WorklistEntry, str]]:
        return [tx.add_worklist_item(item) for item in items]

    try:
        results = index.write(work, lambda _: None)
    except Exception as exc:
        _log.warning("worklist_refused", reason=str(exc), items=len(items))
        raise
    for item, (entry, name_on_record) in zip(items, results, strict=True):
        _logged(item, entry, name_on_record)
    return [entry for entry, _ in results]


def _logged(item: WorklistItem, entry: WorklistEntry, name_on_record: str) -> None:
    ids = {"study_uid": entry.study_uid, "sps_id": entry.sps_id, "patient_id": item.patient_id, "issuer": item.issuer}
    if entry.created:
        _log.info("worklist_created", modality=item.modality, start_date=item.start_date, **ids)
    if normalised(name_on_record, "PN") != item.patient_name:
        _log.warning("worklist_patient_name_differs", item_name=item.patient_name, on_record=name_on_record, **ids)


def find(
    index: Index, identifier: Dataset, watch: Watch, include_done: bool = False, own_station: str = ""
) -> Iterator[Dataset]:
    """The answers to a Modality Worklist identifier: one per matching item,
    with the requested keys filled from it (or empty), in the query's
    character set when it fits, else UTF-8."""
    terms = charset.requested(identifier)
    for stored in index.worklist_matches(identifier, include_done, own_station):
        watch()
        response = answer(identifier, stored)
        charset.declare(response, terms)
        yield response


def answer(identifier: Dataset, stored: Dataset) -> Dataset:
    """The requested keys of *identifier*, filled from *stored*. A requested
    Scheduled Procedure Step Sequence comes back with its requested keys;
    an empty one (universal) with the whole step."""
    response = Dataset()
    for elem in identifier:
        if elem.keyword in NOT_KEYS or elem.tag.element == 0:
            continue
        if elem.keyword == SPS and elem.keyword in stored:
            query_items = elem.value or []
            step = stored[SPS].value[0]
            wanted = query_items[0] if query_items else Dataset()
            response.add_new(elem.tag, "SQ", Sequence([_requested(wanted, step)]))
        elif elem.tag in stored:
            response[elem.tag] = stored[elem.tag]
        else:
            response.add_new(elem.tag, elem.VR, [] if elem.VR == "SQ" else None)
    return response


def _requested(wanted: Dataset, step: Dataset) -> Dataset:
    if len(wanted) == 0:
        return step
    item = Dataset()
    for elem in wanted:
        if elem.tag in step:
            item[elem.tag] = step[elem.tag]
        else:
            item.add_new(elem.tag, elem.VR, [] if elem.VR == "SQ" else None)
    return item


def remove(index: Index, study_uid: str, sps_id: str) -> bool:
    removed = index.write(lambda tx: tx.remove_worklist_item(study_uid, sps_id), lambda _: None)
    if removed:
        _log.info("worklist_removed", study_uid=study_uid, sps_id=sps_id)
    return removed


def set_status(index: Index, study_uid: str, sps_id: str, status: str) -> WorklistEntry:
    entry = index.write(lambda tx: tx.set_worklist_status(study_uid, sps_id, status), lambda _: None)
    if entry is None:
        raise WorklistNotFound(
            f"no worklist item with StudyInstanceUID {study_uid} and ScheduledProcedureStepID {sps_id}"
        )
    _log.info("worklist_status", study_uid=study_uid, sps_id=sps_id, status=status)
    return entry
