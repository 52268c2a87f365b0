"""Frames and bulk data of a stored instance (WADO-RS ``/frames``,
``/bulkdata``): native (uncompressed, little endian) or, for a compressed
instance, its frames as stored.

A native frame of an instance stored in another form comes from the
instance converted to Explicit VR Little Endian by the send plan, in the
conversion pool like any other conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from io import BytesIO

import pydicom
from pydicom import uid as ts
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.filereader import read_dataset

from pacsd.domain.errors import NoSuchAttribute, NoSuchFrame, Unreadable
from pacsd.domain.outcomes import StoredInstance
from pacsd.ports import FileStore
from pacsd.services.metadata import bulk_value, is_pixel_path
from pacsd.services.retrieve import Outgoing

# Stored syntaxes whose pixel bytes are already native little endian.
NATIVE = frozenset((ts.ExplicitVRLittleEndian, ts.ImplicitVRLittleEndian))

Prepare = Callable[[StoredInstance, Sequence[str]], "Future[Outgoing]"]


def dataset(storage: FileStore, instance: StoredInstance, native: bool, prepare: Prepare) -> Dataset:
    """The dataset of *instance*: as stored, or with native pixel data when
    *native* and it is stored otherwise (NotSendable if that fails)."""
    if not native or instance.transfer_syntax in NATIVE:
        try:
            return pydicom.dcmread(storage.absolute(instance.path))
        except (OSError, ValueError) as exc:
            raise Unreadable(f"stored file unreadable: {exc}") from None
    # Stored in neither native syntax, so converted: whole bytes, never a FileRegion.
    data = prepare(instance, [ts.ExplicitVRLittleEndian]).result().data
    assert isinstance(data, bytes)
    return read_dataset(BytesIO(data), is_implicit_VR=False, is_little_endian=True)


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def check_frames(ds: Dataset, numbers: Sequence[int]) -> int:
    """The instance's number of frames; NoSuchFrame for one it lacks."""
    if "PixelData" not in ds:
        raise NoSuchFrame("the instance has no pixel data, hence no frames")
    count = frame_count(ds)
    for number in numbers:
        if not 1 <= number <= count:
            raise NoSuchFrame(f"frame {number}: the instance has {count} frame(s), numbered from 1")
    return count


def native_frames(ds: Dataset, numbers: Sequence[int]) -> list[bytes]:
    """Frames *numbers* (from 1) of a dataset with native pixel data."""
    count = check_frames(ds, numbers)
    bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated)
    if bits % 8:
        raise NoSuchFrame(f"frames of {ds.BitsAllocated}-bit pixels do not start on a byte; ask for the bulk data")
    size = bits // 8
    data = ds.PixelData
    if len(data) < count * size:
        raise Unreadable(f"pixel data of {len(data)} bytes is short of {count} frames of {size}")
    return [bytes(data[(n - 1) * size : n * size]) for n in numbers]


def stored_frames(ds: Dataset, numbers: Sequence[int]) -> list[bytes]:
    """Frames *numbers* (from 1) of a dataset with encapsulated pixel data, as stored."""
    count = check_frames(ds, numbers)
    try:
        return [get_frame(ds.PixelData, n - 1, number_of_frames=count) for n in numbers]
    except ValueError as exc:
        raise Unreadable(f"encapsulated pixel data unreadable: {exc}") from None


def frames(
    storage: FileStore, instance: StoredInstance, numbers: Sequence[int], native: bool, prepare: Prepare
) -> list[bytes]:
    ds = dataset(storage, instance, native, prepare)
    return native_frames(ds, numbers) if native else stored_frames(ds, numbers)


def bulkdata(storage: FileStore, instance: StoredInstance, path: str, native: bool, prepare: Prepare) -> list[bytes]:
    """The value bulk data *path* names: one part, or for encapsulated
    pixel data as stored (not *native*) one part per frame."""
    pixel = is_pixel_path(path)
    ds = dataset(storage, instance, native and pixel, prepare)
    if pixel and not native:
        return stored_frames(ds, range(1, frame_count(ds) + 1))
    try:
        return [bulk_value(ds, path)[1]]
    except (KeyError, TypeError) as exc:
        raise NoSuchAttribute(f"bulk data path {path!r}: {exc}") from None
