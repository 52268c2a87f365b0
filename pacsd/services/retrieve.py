"""Reading stored instances back for a retrieve: as the bytes they were
stored in (the common case: no decoding), or decoded to be re-encoded.

Objects go out as they were stored; the DIMSE adapter converts (explicit
<-> implicit VR) only when the peer accepted no context for the stored
syntax.
"""

from __future__ import annotations

import os

from pydicom import dcmread
from pydicom.dataset import Dataset

from pacsd.domain.outcomes import StoredInstance
from pacsd.domain.part10 import FileRegion, dataset_offset
from pacsd.ports import FileStore

READ_WHOLE_MAX = 4 * 1024 * 1024  # larger datasets are sent from their file as they are read

StoredDataset = memoryview | FileRegion


def stored_dataset(storage: FileStore, instance: StoredInstance) -> StoredDataset:
    """The stored dataset bytes of *instance* (after its file meta): read
    whole, or for a large one the region of its file (one open either way).
    OSError or ValueError if the file is gone or damaged."""
    path = str(storage.absolute(instance.path))
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > READ_WHOLE_MAX:
            offset = dataset_offset(file.read(144), size, path)
            return FileRegion(path, offset, size - offset)
        data = file.read()  # one read: this runs per sub-operation
    return memoryview(data)[dataset_offset(data, len(data), path) :]


def load(storage: FileStore, instance: StoredInstance) -> Dataset:
    """The stored object, decoded (to be re-encoded in another syntax);
    ValueError if it cannot be read."""
    try:
        return dcmread(storage.absolute(instance.path))
    except Exception as exc:
        raise ValueError(f"{instance.path}: {exc}") from None
