"""What the archive's use cases answer, independent of any protocol: the
adapters map these (and :mod:`pacsd.domain.errors`) to their statuses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pacsd.domain.header import Header


class Result(Enum):
    STORED = "stored"
    ALREADY_STORED = "already_stored"  # identical re-send: nothing changed
    DUPLICATE_KEPT = "duplicate_kept"  # different content: stored copy kept
    STAGED = "staged"  # a caching-proxy fetch's arrival: kept in staging, not indexed


@dataclass(frozen=True)
class Outcome:
    result: Result
    header: Header
    comment: str = ""


@dataclass(frozen=True)
class StoredInstance:
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: str  # relative to data_dir/files


class Placement(Enum):
    NEW = "new"  # the instance row was created; its file must be placed
    DUPLICATE = "duplicate"  # the SOP instance is already stored in this series


@dataclass(frozen=True)
class Linked:
    """Where the index put an arriving object."""

    placement: Placement
    instance_id: int
    stored_path: str  # relative to data_dir/files: the new file's, or the stored duplicate's


@dataclass(frozen=True)
class FetchRecord:
    """One fetch of a study from an upstream by the caching proxy."""

    study_uid: str
    upstream: str
    done: bool
    expected: int  # instances the upstream said it holds
    received: int
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Shortfall:
    """A requested study the caching proxy could not make local."""

    study_uid: str
    expected: int  # instances the upstream said it holds (0 if unknown)
    reason: str
    cancelled: bool = False


@dataclass
class RetrievePlan:
    """What a C-MOVE/C-GET (or WADO) will send: the stored instances, and
    what the caching proxy could not fetch for it (counted as failed)."""

    instances: list[StoredInstance]
    shortfalls: list[Shortfall]

    @property
    def cancelled(self) -> bool:
        """The client cancelled while the proxy was fetching."""
        return any(s.cancelled for s in self.shortfalls)


@dataclass(frozen=True)
class Change:
    """One entry of the change feed. UIDs not concerned by the level are ''."""

    seq: int
    at: str  # UTC, ISO 8601 with a trailing 'Z'
    action: str  # create, update, merge, delete
    level: str  # patient, study, series, instance
    patient_id: str
    issuer: str
    study_uid: str
    series_uid: str
    sop_uid: str
