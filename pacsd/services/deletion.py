"""Deleting a study, series or instance (DICOMweb DELETE): rows, then files.

The order is what makes a crash at any point safe ("never a row without its
file, never a file without its row or a listing"):

1. one unit of work removes the rows (and the parents left empty), writes
   the change feed, marks the caching proxy's fetches of the study stale,
   and lists the files in the index (``removal``); until it commits,
   nothing changed, files included;
2. after the commit, the listed files are unlinked (and the directories
   left empty removed) *inside* further units of work, a batch each, which
   also unlist them: the index writer serializes them with every store, so
   a file stored anew under a listed path (the same SOP Instance UID
   re-sent after the delete) is seen by its instance row and kept. The
   changed directories are fsynced before the unlisting commits;
3. start-up (:func:`finish`, before anything serves) finishes what a crash
   left listed, and ``pacsd fsck`` names a listed file as pending removal,
   never as unindexed (its ``--reindex`` would bring a deleted object back).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from pacsd import log
from pacsd.domain.deletion import Deleted, DeleteTarget
from pacsd.domain.errors import NoSuchResource
from pacsd.domain.outcomes import StoredInstance
from pacsd.ports import FileStore, Index, IndexTransaction

BATCH = 256  # files unlinked per unit of work: a big study does not hold the writer long

_log = log.get("pacsd.deletion")


def delete(index: Index, storage: FileStore, target: DeleteTarget, forget: Callable[[StoredInstance], None]) -> Deleted:
    """Delete *target* (NoSuchResource if not stored); *forget* drops what
    is cached of each deleted instance."""
    deleted = index.write(lambda tx: tx.delete(target), lambda _: None)
    if deleted is None:
        raise NoSuchResource(f"no such {target}")
    try:
        finish(index, storage)
    except Exception as exc:  # the rows are gone: start-up removes the files
        _log.error("removal_failed", error=str(exc), **_fields(deleted))
    for instance in deleted.instances:
        forget(instance)
    _log.info("deleted", **_fields(deleted))
    return deleted


def finish(index: Index, storage: FileStore) -> int:
    """Unlink every file listed for removal (those an instance row names
    again stay) and unlist them; how many were unlisted."""
    total = 0
    while True:
        done: int = index.write(partial(_remove_batch, storage), lambda _: None)
        total += done
        if done < BATCH:
            return total


def _remove_batch(storage: FileStore, tx: IndexTransaction) -> int:
    listed = tx.pending_removals(BATCH)
    changed: set[str] = set()
    for path, stored_again in listed:
        if stored_again:
            continue
        storage.remove(storage.absolute(path))
        changed.update(storage.prune(path))
    for directory in changed:
        tx.before_commit(("removal", directory), partial(_sync_if_there, storage, directory))
    tx.drop_removals([path for path, _ in listed])
    return len(listed)


def _sync_if_there(storage: FileStore, directory: str) -> None:
    # A later delete in the same group may have removed it: nothing to flush.
    try:
        storage.sync_directory(directory)
    except FileNotFoundError:
        pass


def _fields(deleted: Deleted) -> dict[str, object]:
    target = deleted.target
    return {
        "delete_level": target.level,  # "level" is the log level
        "study_uid": target.study_uid,
        "series_uid": target.series_uid or None,
        "sop_instance_uid": target.sop_uid or None,
        "instances": len(deleted.instances),
        "series_removed": len(deleted.series),
        "study_removed": deleted.study,
        "patient_removed": deleted.patient,
    }
