"""The ports: what the services need from the index, the file store and
the caching proxy, as typed protocols.

Implementations: :mod:`pacsd.index` (SQLite), :mod:`pacsd.storage` (files),
:mod:`pacsd.upstream` (the caching proxy); :mod:`pacsd.bootstrap` wires
them into one :class:`pacsd.services.archive.Archive`. Services import
these protocols, never the implementations.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from pydicom.dataset import Dataset

from pacsd.domain.deletion import Deleted, DeleteTarget
from pacsd.domain.header import Header
from pacsd.domain.outcomes import Change, FetchRecord, Linked, Shortfall, StoredInstance
from pacsd.domain.query import C_FIND, InformationModel, SearchOptions
from pacsd.domain.received import Received
from pacsd.domain.worklist import WorklistEntry, WorklistItem

T = TypeVar("T")

# Called often while a use case waits (on a lock, an upstream): raises
# pacsd.domain.errors.Cancelled once the client has cancelled, or what the
# client's connection raised if it went away.
Watch = Callable[[], None]


def no_watch() -> None:
    """The Watch of a caller nobody can cancel (an operator, a RIS)."""


# Identifiers for every log line of one request (association, peer, ...).
LogFields = dict[str, object]


class IndexTransaction(Protocol):
    """One unit of work on the index. Everything it writes, the change
    feed included, commits together or not at all."""

    def link(self, header: Header, relative_path: str, size: int, transfer_syntax: str) -> Linked:
        """Get or create the patient, study, series and instance rows of
        *header* (each creation in the change feed); raise
        IdentityConflict when a stored link disagrees."""
        ...

    def keep_copy(self, instance_id: int, data: bytes) -> None:
        """Keep the bytes of a placed file until its flush (write-ahead)."""
        ...

    def drop_copies(self, instance_ids: Sequence[int]) -> None: ...

    def delete(self, target: DeleteTarget) -> Deleted | None:
        """Remove the rows of *target* (and its parents left empty), each in
        the change feed, and list its files for removal; mark the study's
        proxy fetches stale. None, changing nothing, if there is no such row."""
        ...

    def pending_removals(self, limit: int) -> list[tuple[str, bool]]:
        """Up to *limit* files listed for removal: (path relative to files/,
        whether an instance row names that path again: keep the file)."""
        ...

    def drop_removals(self, paths: list[str]) -> None:
        """Unlist files: removed, or kept for the instance now stored there."""
        ...

    def record_fetch(self, fetch: FetchRecord) -> None: ...

    def add_worklist_item(self, item: WorklistItem) -> tuple[WorklistEntry, str]:
        """Store *item* on its patient (the same get-or-create as images');
        the entry (``created`` False for an identical re-add) and the
        patient's name on record. WorklistConflict: its keys are taken by
        other content; IdentityConflict: its study is another patient's."""
        ...

    def remove_worklist_item(self, study_uid: str, sps_id: str) -> bool: ...

    def set_worklist_status(self, study_uid: str, sps_id: str, status: str) -> WorklistEntry | None:
        """None: no such item."""
        ...

    def add_mpps(self, sop_uid: str, dataset: Dataset) -> None:
        """Keep a new MPPS on its patient (got or created when it names a
        PatientID), with the series it lists; MppsDuplicate if it exists."""
        ...

    def mpps(self, sop_uid: str) -> Dataset | None: ...

    def update_mpps(self, sop_uid: str, dataset: Dataset) -> None: ...

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
        """Record in the change feed, in this unit of work, that the *level*
        row *row_id* was created, updated, merged or deleted."""
        ...

    def before_commit(self, key: Hashable, action: Callable[[], None]) -> None:
        """Run *action* once per *key* before the commit; if it raises,
        nothing of the commit is kept."""
        ...


class Index(Protocol):
    """The archive's index: reads, and writes as units of work."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def write(self, work: Callable[[IndexTransaction], T], undo: Callable[[T], None]) -> T:
        """Run *work* in a unit of work and return its value once committed.
        Raises what *work* raised (nothing of it is kept), StorageFailure if
        the commit could not be made durable (then *undo* reverses what
        *work* did outside the index, such as a placed file)."""
        ...

    def matches(
        self, identifier: Dataset, model: InformationModel, max_values: int, options: SearchOptions = C_FIND
    ) -> Iterator[Dataset]:
        """One dataset per match of a C-FIND identifier, with its requested
        keys filled (QueryRetrieveLevel included); no read is held open
        between yields."""
        ...

    def instances(self, identifier: Dataset, model: InformationModel, max_values: int) -> list[StoredInstance]:
        """The stored instances a retrieve identifier names."""
        ...

    def fetched_whole(self, study_uid: str) -> bool: ...

    def stored_sops(self, study_uid: str) -> set[str]: ...

    def copies(self) -> Iterator[tuple[int, str, bytes]]:
        """(instance id, path relative to files/, file bytes) of every write-ahead copy."""
        ...

    def instance_paths(self) -> Iterator[str]: ...

    def removals(self) -> list[str]:
        """Paths (relative to files/) of files a delete listed that are not removed yet."""
        ...

    def counts(self) -> dict[str, int]: ...

    def worklist_matches(
        self, identifier: Dataset, include_done: bool, own_station: str, scheduled_since: str = ""
    ) -> Iterator[Dataset]:
        """The stored worklist items a Modality Worklist identifier matches
        (InvalidQuery if it cannot be answered); done and expired items
        (never started, scheduled before *scheduled_since*) only if
        *include_done*; *own_station* stands in for an absent Scheduled
        Station AE Title ('' = any)."""
        ...

    def changes_since(self, seq: int, limit: int) -> list[Change]:
        """Change-feed entries with a sequence number above *seq*, oldest first."""
        ...


class FileStore(Protocol):
    """Where stored objects live, and how a write becomes durable."""

    root: Path
    files: Path
    tmp: Path

    def relative_path(self, study_uid: str, series_uid: str, sop_uid: str) -> str: ...

    def absolute(self, relative: str) -> Path: ...

    def write_temp(
        self, chunks: Iterable[bytes], directory: Path | None = None, *, sync: bool = True, tail: str | None = None
    ) -> str: ...

    def place(self, temp: str | Path, relative: str) -> list[str]:
        """Rename *temp* to *relative*; the directories the rename changed."""
        ...

    def remove(self, path: str | Path) -> None: ...

    def sync(self) -> None: ...

    def sync_directory(self, path: str | Path) -> None: ...

    def prune(self, relative: str) -> list[str]:
        """Remove the directories of *relative* that are empty (not files/
        itself); the directories whose entries that changed, to fsync."""
        ...


class Flusher(Protocol):
    """Flushes placed files whose bytes wait in the index (write-ahead)."""

    def written(self, instance_id: int) -> None:
        """The rows and copy of *instance_id* are committed; flush its file."""
        ...


class FetchSink(Protocol):
    """Where the caching proxy hands what it fetched: the Archive."""

    def store_fetched(self, files: list[Path], fetch: FetchRecord) -> int:
        """Index every staged file of one study, with *fetch* ('done'), in
        one unit of work, or none of them (raises the Refusal)."""
        ...

    def record_fetch(self, fetch: FetchRecord) -> None:
        """Keep a record of a failed fetch."""
        ...


class Source(Protocol):
    """The caching proxy: upstream archives consulted by find and retrieve."""

    def matches(
        self, identifier: Dataset, model: InformationModel, watch: Watch, problems: list[str], log_fields: LogFields
    ) -> Iterator[Dataset]:
        """What the upstreams answer to a C-FIND identifier. An upstream that
        cannot be asked adds a sentence to *problems* and is skipped."""
        ...

    def make_local(self, identifier: Dataset, watch: Watch, sink: FetchSink, log_fields: LogFields) -> list[Shortfall]:
        """Fetch what a retrieve identifier asks for and is not local; what
        could not be made local."""
        ...

    def fetch_of(self, originator_ae: str, originator_id: int, calling_ae: str) -> int | None:
        """The fetch an arriving C-STORE belongs to (sent by an upstream for
        our own C-MOVE), or None for an ordinary store."""
        ...

    def stage(self, fetch_id: int, received: Received) -> Header:
        """Validate an arrival of fetch *fetch_id* and keep it in staging,
        never in the index; raises a Refusal (NoFetchWaiting included)."""
        ...
