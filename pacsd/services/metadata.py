"""An instance's DICOM JSON metadata (PS3.18 F) for WADO-RS ``/metadata``,
built once per stored file and kept in a cache directory.

Binary values (OB, OD, OF, OL, OV, OW, UN, and the pixel data whatever its
VR) are not inlined: they become a ``BulkDataURI``. The cache keeps them
relative (``studies/{study}/series/{series}/instances/{sop}/bulkdata/{path}``)
so one entry serves every base URL; :func:`absolute` completes them.

A stored file never changes once placed, so an entry stays good for as
long as the file it was built from: each entry records that file's size
and modification time, and a stale one (a file rewritten at start-up from
its write-ahead copy) is rebuilt. Deletion and corrections call
:meth:`MetadataCache.forget`, the one place to invalidate.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from pacsd.domain.errors import NoSuchAttribute, Unreadable
from pacsd.domain.outcomes import StoredInstance
from pacsd.ports import FileStore
from pacsd.services.conversions import Conversions

FORMAT = 1  # bump when the JSON built changes: every entry is rebuilt
BINARY_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "UN"))
PIXEL_TAGS = frozenset((0x7FE00008, 0x7FE00009, 0x7FE00010))  # Float, Double Float, Pixel Data
TRAILING_PADDING = 0xFFFCFFFC
DEFER_SIZE = 1024  # values longer than this are not read to build the JSON
BULK_KEY = '"BulkDataURI": "'  # as json.dumps writes it; never inside a string value (quotes are escaped)


def is_pixel_path(path: str) -> bool:
    """Whether bulk data path *path* names the (float) pixel data itself."""
    return path.strip("/").upper() in {f"{tag:08X}" for tag in PIXEL_TAGS}


def bulkdata_root(study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulkdata/"


def absolute(cached: str, base: str) -> str:
    """*cached* JSON with its relative BulkDataURIs made absolute under
    *base* (``https://host/dicomweb``)."""
    escaped = json.dumps(base.rstrip("/") + "/")[1:-1]
    return cached.replace(BULK_KEY, BULK_KEY + escaped)


def build(path: str | Path) -> str:
    """The DICOM JSON object of the Part 10 file at *path*, BulkDataURIs
    relative. Unreadable if it cannot be parsed."""
    try:
        ds = pydicom.dcmread(path, defer_size=DEFER_SIZE)
        root = bulkdata_root(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        obj = _object(ds, root)
        if ds.file_meta.TransferSyntaxUID.is_encapsulated and "7FE00010" in obj:
            obj["7FE00010"]["vr"] = "OB"  # encapsulated pixel data is OB (PS3.5 A.4)
        return json.dumps(obj, ensure_ascii=False)
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise Unreadable(f"stored file unreadable: {exc}") from None


def _vr(ds: Dataset, tag: BaseTag) -> str:
    raw = ds.get_item(tag)
    vr = raw.VR if isinstance(raw, (RawDataElement, DataElement)) else None
    if vr is None:  # implicit VR: the dictionary's, or UN for an unknown private tag
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    if " or " in vr:  # "US or SS", "OB or OW": the dataset resolves it
        return str(ds[tag].VR)
    return str(vr)


def _length(ds: Dataset, tag: BaseTag) -> int:
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement):
        return 0 if raw.length == 0 else 1  # undefined length (encapsulated) counts as present
    value = raw.value if isinstance(raw, DataElement) else None
    return len(value) if value else 0


def _object(ds: Dataset, root: str, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in ds.keys():
        if tag == TRAILING_PADDING:
            continue
        key = f"{tag:08X}"
        vr = _vr(ds, tag)
        if tag in PIXEL_TAGS or vr in BINARY_VRS:
            out[key] = {"vr": vr, "BulkDataURI": root + prefix + key} if _length(ds, tag) else {"vr": vr}
        elif vr == "SQ":
            items = [_object(item, root, f"{prefix}{key}/{n}/") for n, item in enumerate(ds[tag].value, 1)]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        else:
            out[key] = ds[tag].to_json_dict(None, 0)
    return out


def bulk_tags(text: str) -> list[tuple[int, int]]:
    """``7FE00010`` or ``00540016/1/00181071`` (tag, item number from 1,
    tag...) as [(tag, 0), ..., (tag, item)...]: each step's tag and the item
    to enter after it (0 for the last). NoSuchAttribute if malformed."""
    parts = text.strip("/").split("/")
    if len(parts) % 2 != 1:
        raise NoSuchAttribute(f"bulk data path {text!r}: tag/item/tag... expected")
    steps: list[tuple[int, int]] = []
    try:
        for i in range(0, len(parts), 2):
            tag = int(parts[i], 16)
            item = int(parts[i + 1]) if i + 1 < len(parts) else 0
            if len(parts[i]) != 8 or item < 0 or (i + 1 < len(parts) and item == 0):
                raise ValueError
            steps.append((tag, item))
    except ValueError:
        raise NoSuchAttribute(f"bulk data path {text!r}: tags are 8 hex digits, items numbered from 1") from None
    return steps


def bulk_value(ds: Dataset, text: str) -> tuple[int, bytes]:
    """(tag, bytes) of the binary value that bulk data path *text* names in
    *ds*; NoSuchAttribute if none."""
    steps = bulk_tags(text)
    current = ds
    for tag, item in steps[:-1]:
        element = current.get(Tag(tag))
        if element is None or element.VR != "SQ" or item > len(element.value):
            raise NoSuchAttribute(f"bulk data path {text!r}: no item {item} of ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        current = element.value[item - 1]
    tag = steps[-1][0]
    element = current.get(Tag(tag))
    if element is None or not (tag in PIXEL_TAGS or element.VR in BINARY_VRS) or element.value is None:
        raise NoSuchAttribute(f"bulk data path {text!r}: no binary value ({tag >> 16:04X},{tag & 0xFFFF:04X})")
    value = element.value
    return tag, value if isinstance(value, bytes) else bytes(value)


# (position, stored file, cache entry, stamp) of an entry to build.
Build = tuple[int, str, str, str]
PARALLEL_FROM = 32  # missing entries from which conversion processes build shares


def build_entries(builds: Sequence[Build]) -> list[str]:
    """Build and keep each entry (also run in a conversion process)."""
    bodies = []
    for _, path, entry, stamp in builds:
        body = build(path)
        _put(Path(entry), stamp + "\n" + body)
        bodies.append(body)
    return bodies


def _cached(entry: Path, stamp: str) -> str | None:
    try:
        head, _, body = entry.read_text(encoding="utf-8").partition("\n")
    except (OSError, UnicodeDecodeError):
        return None
    return body if head == stamp and body else None


def _put(entry: Path, text: str) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        temp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, entry)  # readers see the old entry or the new, never half
    except OSError:
        pass  # a cache that cannot be written only costs time


class MetadataCache:
    """Each instance's metadata JSON, under ``<data dir>/cache/metadata``
    at the stored file's own relative path. Not durable on purpose: a lost
    or torn entry is rebuilt from the file."""

    def __init__(self, storage: FileStore) -> None:
        self.storage = storage
        self.root = storage.root / "cache" / "metadata"

    def _entry(self, instance: StoredInstance) -> Path:
        return self.root / (instance.path + ".json")

    def stamp(self, instance: StoredInstance) -> str:
        """What the entry of *instance* depends on: its file's size and
        modification time (Unreadable if the file is gone)."""
        try:
            st = os.stat(self.storage.absolute(instance.path))
        except OSError as exc:
            raise Unreadable(f"stored file unreadable: {exc}") from None
        return f"v{FORMAT} {st.st_size} {st.st_mtime_ns}"

    def get(self, instance: StoredInstance) -> str:
        """The metadata JSON of *instance* (relative BulkDataURIs)."""
        return self.get_all([instance])[0]

    def get_all(self, instances: Sequence[StoredInstance], helpers: Conversions | None = None) -> list[str]:
        """The metadata JSON of each of *instances*. Entries missing or stale
        are built here; when there are many (a series never asked for
        before), *helpers*' processes build shares of them meanwhile."""
        bodies: list[str | None] = []
        missing: list[Build] = []
        for instance in instances:
            stamp, entry = self.stamp(instance), self._entry(instance)
            bodies.append(_cached(entry, stamp))
            if bodies[-1] is None:
                missing.append((len(bodies) - 1, str(self.storage.absolute(instance.path)), str(entry), stamp))
        pool = helpers if helpers is not None and len(missing) >= PARALLEL_FROM else None
        shares = 1 + (pool.processes if pool is not None else 0)
        chunks = [missing[n::shares] for n in range(shares)]
        elsewhere = (
            [pool.call(build_entries, chunk, source="stored", target="metadata") for chunk in chunks[1:]]
            if pool
            else []
        )
        for (n, *_), body in zip(chunks[0], build_entries(chunks[0]), strict=True):
            bodies[n] = body
        for chunk, future in zip(chunks[1:], elsewhere, strict=True):
            for (n, *_), body in zip(chunk, future.result(), strict=True):
                bodies[n] = body
        return [body for body in bodies if body is not None]

    def etag(self, instances: Sequence[StoredInstance]) -> str:
        """A strong validator of the metadata of *instances*: their UIDs and
        files' stamps, so it changes when any entry would."""
        digest = hashlib.sha256()
        for instance in instances:
            digest.update(f"{instance.sop_uid} {instance.path} {self.stamp(instance)}\n".encode())
        return '"' + digest.hexdigest()[:32] + '"'

    def forget(self, instance: StoredInstance) -> None:
        """Drop the entry of *instance* (deleted, or its file replaced)."""
        try:
            self._entry(instance).unlink()
        except FileNotFoundError:
            pass
