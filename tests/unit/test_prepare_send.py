"""The send path of a retrieve: Archive.prepare_send on instances stored in a
real archive, and the conversion pool surviving a conversion process that dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom import uid as ts
from pydicom.dataset import Dataset

from pacsd.domain.errors import ConversionFailed, NoUsableSyntax, Unreadable
from pacsd.domain.outcomes import StoredInstance
from pacsd.domain.part10 import dataset_offset
from pacsd.domain.query import InformationModel
from pacsd.domain.received import received_from_file
from pacsd.ports import no_watch
from pacsd.services.archive import Archive
from pacsd.services.conversions import Conversions
from pacsd.testing import synth
from pacsd.testing.samples import decoded, sample


def _shipped(name: str) -> Dataset:
    ds = dcmread(sample(name))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = synth.new_uid(), synth.new_uid(), synth.new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "SEND1"
    return ds


def _stored(archive: Archive, ds: Dataset, work: Path) -> StoredInstance:
    """*ds* stored in its own transfer syntax, as the index lists it."""
    path = work / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    archive.store(received_from_file(path))
    keys = Dataset()
    keys.QueryRetrieveLevel = "IMAGE"
    keys.StudyInstanceUID, keys.SeriesInstanceUID = ds.StudyInstanceUID, ds.SeriesInstanceUID
    keys.SOPInstanceUID = ds.SOPInstanceUID
    [instance] = archive.plan_retrieve(keys, InformationModel.STUDY_ROOT, no_watch, {}).instances
    return instance


def test_stored_syntax_accepted_goes_as_stored(archive: Archive, tmp_path: Path) -> None:
    original = _shipped("MR_small_jpeg_ls_lossless.dcm")
    instance = _stored(archive, original, tmp_path)
    outgoing = archive.prepare_send(instance, [ts.ExplicitVRLittleEndian, ts.JPEGLSLossless]).result()
    assert (outgoing.syntax, outgoing.converted_from) == (ts.JPEGLSLossless, "")
    assert bytes(outgoing.data) == _dataset_bytes(archive, instance)


def test_other_syntax_is_converted_losslessly(archive: Archive, tmp_path: Path) -> None:
    original = _shipped("MR_small_jpeg_ls_lossless.dcm")
    instance = _stored(archive, original, tmp_path)
    outgoing = archive.prepare_send(instance, [ts.ImplicitVRLittleEndian]).result()
    assert (outgoing.syntax, outgoing.converted_from) == (ts.ImplicitVRLittleEndian, ts.JPEGLSLossless)
    assert isinstance(outgoing.data, bytes)
    received = decoded(outgoing.data, outgoing.syntax)
    assert received.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(received.pixel_array, original.pixel_array)


def test_nothing_usable_is_refused_with_both_sides_named(archive: Archive, tmp_path: Path) -> None:
    instance = _stored(archive, _shipped("MR_small_jpeg_ls_lossless.dcm"), tmp_path)
    with pytest.raises(
        NoUsableSyntax, match="stored as JPEG-LS Lossless.*JPEG Baseline.*none of which pacsd can encode"
    ):
        archive.prepare_send(instance, [ts.JPEGBaseline8Bit]).result()


def test_lossless_original_is_not_made_lossy(archive: Archive, tmp_path: Path) -> None:
    instance = _stored(archive, synth.ct(pixel_bytes=2 * 64 * 64), tmp_path)
    with pytest.raises(NoUsableSyntax, match="converting to a lossy syntax is not allowed"):
        archive.prepare_send(instance, [ts.JPEG2000]).result()


def test_missing_file_is_unreadable_as_stored_and_when_converting(archive: Archive, tmp_path: Path) -> None:
    instance = _stored(archive, _shipped("MR_small_jpeg_ls_lossless.dcm"), tmp_path)
    archive.storage.absolute(instance.path).unlink()
    with pytest.raises(Unreadable, match="stored file unreadable"):
        archive.prepare_send(instance, [ts.JPEGLSLossless]).result()
    with pytest.raises(ConversionFailed, match="unreadable"):
        archive.prepare_send(instance, [ts.ExplicitVRLittleEndian]).result()


def test_truncated_frame_fails_with_the_reason(archive: Archive, tmp_path: Path) -> None:
    original = _shipped("MR_small_jpeg_ls_lossless.dcm")
    frame = original.PixelData
    # One fragment: drop the end-of-image marker, keep the item lengths even.
    offset = frame.index(b"\xfe\xff\x00\xe0", 8)  # the first fragment's item, after the empty offset table
    fragment = frame[offset + 8 :]
    cut = fragment[: len(fragment) - 8]
    original.PixelData = frame[:8] + b"\xfe\xff\x00\xe0" + len(cut).to_bytes(4, "little") + cut
    instance = _stored(archive, original, tmp_path)
    with pytest.raises(ConversionFailed, match="end-of-image marker: truncated") as failed:
        archive.prepare_send(instance, [ts.ExplicitVRLittleEndian]).result()
    assert (failed.value.source, failed.value.target) == (ts.JPEGLSLossless, ts.ExplicitVRLittleEndian)


def test_a_conversion_process_that_dies_fails_its_conversion_and_the_pool_recovers(tmp_path: Path) -> None:
    big = synth.ct(pixel_bytes=2 * 2048 * 2048)
    big.NumberOfFrames = 8
    big.PixelData = np.random.default_rng(7).integers(0, 4096, 8 * 2048 * 2048, dtype=np.uint16).tobytes()
    slow = synth.write(big, tmp_path / "big.dcm")  # to JPEG 2000: seconds of work
    small = synth.write(synth.ct(pixel_bytes=2 * 64 * 64), tmp_path / "small.dcm")
    conversions = Conversions(1)
    try:
        converting = conversions.submit(str(slow), ts.ExplicitVRLittleEndian, ts.JPEG2000Lossless)
        for child in _started_conversion_processes():
            os.kill(child, signal.SIGKILL)
        with pytest.raises(ConversionFailed, match="conversion process ended"):
            converting.result(timeout=60)
        data, _ = conversions.submit(str(small), ts.ExplicitVRLittleEndian, ts.RLELossless).result(timeout=60)
        assert np.array_equal(decoded(data, ts.RLELossless).pixel_array, dcmread(small).pixel_array)
    finally:
        conversions.close()
    assert _conversion_processes() == []


def _dataset_bytes(archive: Archive, instance: StoredInstance) -> bytes:
    data = archive.storage.absolute(instance.path).read_bytes()
    return data[dataset_offset(data, len(data), instance.path) :]


def _conversion_processes() -> list[int]:
    """This process's children running a conversion pool's worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _started_conversion_processes(seconds: float = 30.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = _conversion_processes()
        if found:
            time.sleep(0.5)  # let it start on the conversion
            return found
        time.sleep(0.05)
    raise AssertionError("no conversion process started")
