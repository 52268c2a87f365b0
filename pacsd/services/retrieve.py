"""Reading stored instances back for a retrieve, in the form the recipient
takes: the bytes they were stored with when it accepts their syntax (the
common case: no decoding), else converted in the conversion pool as the
send plan (:func:`pacsd.domain.transfer.send_plan`) decides.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from pacsd.domain import transfer
from pacsd.domain.errors import NoUsableSyntax, Unreadable
from pacsd.domain.outcomes import StoredInstance
from pacsd.domain.part10 import FileRegion, dataset_offset
from pacsd.ports import FileStore
from pacsd.services.conversions import Conversions, Converted

READ_WHOLE_MAX = 4 * 1024 * 1024  # larger datasets are sent from their file as they are read

StoredDataset = memoryview | FileRegion


@dataclass(frozen=True)
class Outgoing:
    """One instance ready to send: its dataset in *syntax*, and, when it was
    converted, from what and in how many milliseconds."""

    syntax: str
    data: StoredDataset | bytes
    converted_from: str = ""
    ms: float = 0.0


def stored_dataset(storage: FileStore, instance: StoredInstance) -> StoredDataset:
    """The stored dataset bytes of *instance* (after its file meta): read
    whole, or for a large one the region of its file (one open either way).
    Unreadable if the file is gone or damaged."""
    path = str(storage.absolute(instance.path))
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > READ_WHOLE_MAX:
                offset = dataset_offset(file.read(144), size, path)
                return FileRegion(path, offset, size - offset)
            data = file.read()  # one read: this runs per sub-operation
        return memoryview(data)[dataset_offset(data, len(data), path) :]
    except (OSError, ValueError) as exc:
        raise Unreadable(f"stored file unreadable: {exc}") from None


def prepare(
    storage: FileStore, conversions: Conversions, instance: StoredInstance, accepted: Sequence[str], allow_lossy: bool
) -> Future[Outgoing]:
    """*instance* in a syntax of *accepted* (the recipient's, in its order of
    preference). As stored, the file is read now; a conversion runs in the
    pool while the caller sends what it has. The future fails with a
    NotSendable naming why."""
    ready: Future[Outgoing] = Future()
    plan = transfer.send_plan(instance.transfer_syntax, accepted, allow_lossy)
    if isinstance(plan, transfer.Refuse):
        ready.set_exception(NoUsableSyntax(plan.reason))
        return ready
    if isinstance(plan, transfer.AsStored):
        try:
            ready.set_result(Outgoing(plan.syntax, stored_dataset(storage, instance)))
        except Unreadable as exc:
            ready.set_exception(exc)
        return ready
    path = str(storage.absolute(instance.path))
    target = plan.target

    def converted(done: Future[Converted]) -> None:
        error = done.exception()
        if error is not None:
            ready.set_exception(error)
        else:
            data, ms = done.result()
            ready.set_result(Outgoing(target, data, plan.source, ms))

    conversions.submit(path, plan.source, target).add_done_callback(converted)
    return ready
