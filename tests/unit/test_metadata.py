"""The metadata JSON built for WADO-RS, and its cache, on real files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from pacsd.domain.errors import NoSuchAttribute
from pacsd.domain.outcomes import StoredInstance
from pacsd.services import metadata
from pacsd.services.conversions import Conversions
from pacsd.services.metadata import MetadataCache
from pacsd.storage.files import Storage
from pacsd.testing import synth


def shipped(name: str) -> Path:
    path = get_testdata_file(name)
    assert path
    return Path(path)


@pytest.fixture
def stored(tmp_path: Path) -> tuple[MetadataCache, StoredInstance]:
    storage = Storage(tmp_path / "data")
    storage.make_layout()
    (storage.files / "a").mkdir()
    shutil.copy(shipped("CT_small.dcm"), storage.files / "a" / "ct.dcm")
    ds = pydicom.dcmread(storage.files / "a" / "ct.dcm", stop_before_pixels=True)
    instance = StoredInstance(ds.SOPInstanceUID, ds.SOPClassUID, ds.file_meta.TransferSyntaxUID, "a/ct.dcm")
    return MetadataCache(storage), instance


def test_binary_values_become_uris_and_the_rest_is_inline() -> None:
    obj = json.loads(metadata.absolute(metadata.build(shipped("CT_small.dcm")), "https://h/dicomweb/"))
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    root = f"https://h/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
    assert obj["7FE00010"] == {"vr": "OW", "BulkDataURI": f"{root}{ds.SOPInstanceUID}/bulkdata/7FE00010"}
    assert obj["00431028"]["BulkDataURI"].endswith("/bulkdata/00431028")  # a private OB
    assert obj["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": str(ds.PatientName)}]}
    assert obj["00280010"] == {"vr": "US", "Value": [ds.Rows]}
    assert "FFFCFFFC" not in obj  # trailing padding is not metadata
    assert all("InlineBinary" not in value for value in obj.values())


def test_encapsulated_pixel_data_is_ob_and_implicit_vr_files_get_dictionary_vrs() -> None:
    assert json.loads(metadata.build(shipped("MR_small_jpeg_ls_lossless.dcm")))["7FE00010"]["vr"] == "OB"
    implicit = json.loads(metadata.build(shipped("MR_small_implicit.dcm")))
    assert implicit["00280010"]["vr"] == "US" and implicit["7FE00010"]["vr"] == "OW"


def test_absolute_touches_only_bulk_data_uris() -> None:
    text = json.dumps({"00081030": {"vr": "LO", "Value": ['"BulkDataURI": "x']}, "7FE00010": {"BulkDataURI": "s/"}})
    done = json.loads(metadata.absolute(text, 'http://h"q/dicomweb'))
    assert done["00081030"]["Value"] == ['"BulkDataURI": "x']  # a text value that looks like the key is left alone
    assert done["7FE00010"]["BulkDataURI"] == 'http://h"q/dicomweb/s/'


def test_cache_serves_its_entry_until_the_file_changes(stored: tuple[MetadataCache, StoredInstance]) -> None:
    cache, instance = stored
    first = cache.get(instance)
    entry = cache.root / "a" / "ct.dcm.json"
    head, _, _ = entry.read_text().partition("\n")
    entry.write_text(head + "\n" + '{"marker": 1}')
    assert cache.get(instance) == '{"marker": 1}'  # read from the cache, not the file
    tag = cache.etag([instance])
    file = cache.storage.absolute(instance.path)
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # the file rewritten
    assert cache.etag([instance]) != tag
    assert cache.get(instance) == first  # rebuilt
    cache.forget(instance)
    assert not entry.exists()
    assert cache.get(instance) == first


def test_bulk_paths() -> None:
    assert metadata.bulk_tags("00540016/1/00181071") == [(0x00540016, 1), (0x00181071, 0)]
    for bad in ("7FE0001", "00540016/0/00181071", "00540016/1", "zz"):
        with pytest.raises(NoSuchAttribute):
            metadata.bulk_tags(bad)
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    assert metadata.bulk_value(ds, "7FE00010") == (0x7FE00010, ds.PixelData)
    with pytest.raises(NoSuchAttribute, match=r"\(0010,0010\)"):
        metadata.bulk_value(ds, "00100010")  # not binary


def test_many_missing_entries_are_built_in_shares_by_the_conversion_processes(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    storage.make_layout()
    (storage.files / "s").mkdir()
    instances = []
    for n in range(metadata.PARALLEL_FROM + 8):
        ds = synth.ct(patient_id="META", instance_number=n + 1, pixel_bytes=512)
        synth.write(ds, storage.files / "s" / f"{n}.dcm")
        instances.append(StoredInstance(ds.SOPInstanceUID, ds.SOPClassUID, "1.2.840.10008.1.2.1", f"s/{n}.dcm"))
    cache = MetadataCache(storage)
    helpers = Conversions(1)
    try:
        bodies = cache.get_all(instances, helpers)
    finally:
        helpers.close()
    # In the order asked, each the JSON of its own file, and each kept.
    assert [json.loads(body)["00080018"]["Value"] for body in bodies] == [[i.sop_uid] for i in instances]
    assert bodies == [metadata.build(storage.absolute(i.path)) for i in instances]
    assert all((cache.root / f"{i.path}.json").exists() for i in instances)
    assert cache.get_all(instances) == bodies  # now all from the cache
