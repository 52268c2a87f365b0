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
