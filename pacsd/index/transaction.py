"""The unit of work on the SQLite index (:class:`pacsd.ports.IndexTransaction`).

One :class:`Transaction` wraps one job's savepoint on the writer's
connection. Every write goes through it, and every change it makes is
recorded with :meth:`Transaction.changed` on the same connection: the feed
commits with the change or not at all, by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import apsw
from pydicom.dataset import Dataset

from pacsd.domain.deletion import Deleted, DeleteTarget
from pacsd.domain.header import Header
from pacsd.domain.outcomes import FetchRecord, Linked
from pacsd.domain.worklist import WorklistEntry, WorklistItem, with_status
from pacsd.index import deletion, fetches, identity, mpps, worklist, writeahead
from pacsd.index.dialect import SQLITE
from pacsd.index.writer import IndexWriter

FEED = SQLITE.insert(
    "change", ("action", "level", "row_id", "uid", "patient_id", "issuer", "study_uid", "series_uid", "sop_uid")
)


class Transaction:
    def __init__(self, conn: apsw.Connection, writer: IndexWriter) -> None:
        self.conn = conn
        self._writer = writer

    def add_mpps(self, sop_uid: str, dataset: Dataset) -> None:
        mpps.add(self, sop_uid, dataset)

    def mpps(self, sop_uid: str) -> Dataset | None:
        found = mpps.stored(self, sop_uid)
        return None if found is None else found[1]

    def update_mpps(self, sop_uid: str, dataset: Dataset) -> None:
        found = mpps.stored(self, sop_uid)
        assert found is not None, "read in the same unit of work"
        mpps.update(self, found[0], dataset)

    def changed(
        self,
        action: str,
        level: str,
        row_id: int,
        *,
        patient_id: str = "",
        issuer: str = "",
        study_uid: str = "",
        series_uid: str = "",
        sop_uid: str = "",
    ) -> None:
        """Record a change of the *level* row *row_id* in the feed: the UIDs
        of that row and its parents, and its patient's ID and Issuer (for a
        patient without ID, *study_uid* names the study it is keyed by)."""
        # `uid`, the only field before migration 4, is still written.
        if level == "instance":
            uid = sop_uid
        elif level == "series":
            uid = series_uid
        elif level == "study":
            uid = study_uid
        else:
            uid = str(identity.PatientKey(patient_id, issuer, "" if patient_id else study_uid))
        self.conn.execute(FEED, (action, level, row_id, uid, patient_id, issuer, study_uid, series_uid, sop_uid))

    def link(self, header: Header, relative_path: str, size: int, transfer_syntax: str) -> Linked:
        return identity.link(self, header, relative_path, size, transfer_syntax)

    def keep_copy(self, instance_id: int, data: bytes) -> None:
        writeahead.add(self.conn, instance_id, data)

    def drop_copies(self, instance_ids: Sequence[int]) -> None:
        writeahead.drop(self.conn, instance_ids)

    def delete(self, target: DeleteTarget) -> Deleted | None:
        return deletion.delete(self, target)

    def pending_removals(self, limit: int) -> list[tuple[str, bool]]:
        return deletion.pending(self, limit)

    def drop_removals(self, paths: list[str]) -> None:
        deletion.drop(self, paths)

    def record_fetch(self, fetch: FetchRecord) -> None:
        fetches.record(self.conn, fetch)

    def add_worklist_item(self, item: WorklistItem) -> tuple[WorklistEntry, str]:
        return worklist.add(self, item)

    def remove_worklist_item(self, study_uid: str, sps_id: str) -> bool:
        return worklist.remove(self, study_uid, sps_id)

    def set_worklist_status(self, study_uid: str, sps_id: str, status: str) -> WorklistEntry | None:
        stored = worklist.stored(self.conn, study_uid, sps_id)
        if stored is None:
            return None
        changed = with_status(stored, status)
        worklist.set_status(self, study_uid, sps_id, changed, status)
        return WorklistEntry(changed, study_uid, sps_id, status)

    def before_commit(self, key: Hashable, action: Callable[[], None]) -> None:
        self._writer.before_commit(key, action)
