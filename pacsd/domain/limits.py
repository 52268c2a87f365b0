"""Budgets: every cost a peer controls, bounded.

One frozen record, read from the ``[limits]`` section of the config (every
key documented in ``config/pacsd.toml`` and the README's "Limits"). Each
budget is enforced where the bytes arrive; exceeding one answers a DIMSE
failure status or an A-ABORT, logs ``budget_exceeded`` naming the budget,
and leaves every other association served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# Objects of SOP classes that are never large (structured reports,
# presentation states): longest matching SOP Class UID prefix wins.
DEFAULT_OBJECT_BYTES_BY_CLASS: Mapping[str, int] = MappingProxyType(
    {
        "1.2.840.10008.5.1.4.1.1.88.": 64 * MiB,  # structured reports, key object selection
        "1.2.840.10008.5.1.4.1.1.11.": 64 * MiB,  # presentation states
    }
)


@dataclass(frozen=True)
class Limits:
    # -- connections and time -------------------------------------------
    # TCP connections per worker, associated or not; beyond it a new
    # connection gets A-ASSOCIATE-RJ (transient, local limit exceeded).
    max_connections: int = 200
    # Seconds from accepting a connection to a complete A-ASSOCIATE-RQ (ARTIM).
    associate_timeout: float = 30.0
    # Seconds for one PDU to arrive once its first byte has (a peer trickling
    # bytes is dropped after this, whatever the per-recv silence).
    pdu_timeout: float = 60.0
    # Seconds an association may last, whatever it does.
    association_timeout: float = 14400.0
    # -- association negotiation -----------------------------------------
    max_associate_request_bytes: int = 128 * KiB
    # Total bytes of A-ASSOCIATE-RQs whose answers are remembered.
    associate_cache_bytes: int = 4 * MiB
    # -- messages --------------------------------------------------------
    max_pdu_bytes: int = 1 * MiB  # announced in the A-ASSOCIATE-AC, enforced on receipt
    max_command_bytes: int = 64 * KiB
    max_fragments: int = 1 << 20  # PDVs in one message
    # A C-STORE dataset as received; SOP classes in object_bytes_by_class
    # have their own (longest prefix wins).
    max_object_bytes: int = 4 * GiB
    object_bytes_by_class: Mapping[str, int] = field(default_factory=lambda: DEFAULT_OBJECT_BYTES_BY_CLASS)
    # Datasets larger than this are spooled to a file as they arrive.
    spool_bytes: int = 16 * MiB
    # -- deflated datasets ------------------------------------------------
    max_inflated_bytes: int = 128 * MiB
    # Inflated / deflated, checked once the output passes inflate_ratio_after.
    max_inflate_ratio: int = 200
    inflate_ratio_after: int = 1 * MiB
    # -- queries -----------------------------------------------------------
    max_identifier_bytes: int = 1 * MiB  # C-FIND/C-MOVE/C-GET identifier, inflated
    max_query_values: int = 10_000  # values of one list key (UIDs, text)

    def object_bytes(self, sop_class_uid: str) -> int:
        """The largest C-STORE dataset accepted for *sop_class_uid*."""
        best, limit = -1, self.max_object_bytes
        for prefix, value in self.object_bytes_by_class.items():
            if sop_class_uid.startswith(prefix) and len(prefix) > best:
                best, limit = len(prefix), value
        return limit


class BudgetExceeded(Exception):
    """A peer asked for more than a budget allows; ``budget`` names the key."""

    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget
