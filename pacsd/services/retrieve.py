"""Retrieve: which stored instances a C-MOVE/C-GET asks for, and how to
send each one in the transfer syntax it was stored in.

Objects go out as they were stored. Only when the peer accepted nothing
but another syntax for a SOP class are they converted (explicit <->
implicit VR); :func:`syntax_note` says so, and the adapters log it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext, build_context

from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import StoredInstance
from pacsd.domain.query import InformationModel
from pacsd.index.db import reading
from pacsd.index.search import instances
from pacsd.storage.files import Storage

MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255
UNCOMPRESSED: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def select(identifier: Dataset, model: InformationModel, limits: Limits) -> list[StoredInstance]:
    """The instances *identifier* asks for, read in one short read; a list
    key longer than ``limits.max_query_values`` is QueryOverBudget (an
    InvalidQuery, so the adapters answer 0xA900)."""
    with reading():
        return instances(identifier, model, limits.max_query_values)


def load(storage: Storage, instance: StoredInstance) -> Dataset:
    """The stored object, decoded (to be re-encoded in another syntax);
    ValueError if it cannot be read."""
    try:
        return dcmread(storage.absolute(instance.path))
    except Exception as exc:
        raise ValueError(f"{instance.path}: {exc}") from None


def contexts(stored: Iterable[StoredInstance]) -> list[PresentationContext]:
    """Contexts for a sub-association: each SOP class in each stored syntax
    first, then an uncompressed fallback per SOP class while IDs remain."""
    exact = sorted({(i.sop_class_uid, i.transfer_syntax) for i in stored})
    result = [build_context(sop_class, [syntax]) for sop_class, syntax in exact[:MAX_CONTEXTS]]
    for sop_class in sorted({sop_class for sop_class, _ in exact}):
        if len(result) >= MAX_CONTEXTS:
            break
        result.append(build_context(sop_class, UNCOMPRESSED))
    return result


def syntax_note(instance: StoredInstance, accepted: dict[str, set[str]]) -> str:
    """'' if the peer takes the stored syntax, else what will happen."""
    offered = accepted.get(instance.sop_class_uid, set())
    if instance.transfer_syntax in offered:
        return ""
    stored = UID(instance.transfer_syntax)
    if offered and not stored.is_compressed and any(not UID(t).is_compressed for t in offered):
        return f"converting from {stored.name} to a syntax the peer accepted"
    return f"peer accepted no transfer syntax usable for {stored.name}"
