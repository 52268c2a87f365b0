"""C-ECHO and C-STORE against a running pacsd, with DCMTK and pynetdicom."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from pynetdicom.dsutils import split_dataset

from pacsd.domain.part10 import stored_dataset
from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server, distinct_objects, shipped

# pydicom's shipped files, one per transfer syntax we must accept as sent.
BY_SYNTAX = {
    "1.2.840.10008.1.2": "MR_small_implicit.dcm",
    "1.2.840.10008.1.2.1": "CT_small.dcm",
    "1.2.840.10008.1.2.2": "MR_small_bigendian.dcm",
    "1.2.840.10008.1.2.1.99": "image_dfl.dcm",
    "1.2.840.10008.1.2.4.50": "SC_rgb_jpeg_dcmtk.dcm",
    "1.2.840.10008.1.2.4.51": "JPEG-lossy.dcm",
    "1.2.840.10008.1.2.4.70": "SC_rgb_jpeg_gdcm.dcm",
    "1.2.840.10008.1.2.4.80": "MR_small_jpeg_ls_lossless.dcm",
    "1.2.840.10008.1.2.4.90": "MR_small_jp2klossless.dcm",
    "1.2.840.10008.1.2.4.91": "JPEG2000.dcm",
    "1.2.840.10008.1.2.5": "SC_rgb_rle.dcm",
}


# The storescu option that proposes each syntax.
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def test_echo_with_echoscu(server: Server) -> None:
    assert server.echoscu().returncode == 0
    assert server.events("association_opened")[0]["calling_ae"] == "ECHOSCU"


def test_storescu_stores_shipped_files_in_many_syntaxes(server: Server) -> None:
    extra = ["test-SR.dcm", "waveform_ecg.dcm", "examples_jpeg2k.dcm", "examples_ybr_color.dcm"]
    files = distinct_objects(list(BY_SYNTAX.values()) + extra)
    syntaxes = [pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in files]
    assert len(set(syntaxes)) >= 7
    for path, syntax in zip(files, syntaxes, strict=True):  # storescu proposes one syntax per option
        server.storescu(path, extra=("-R", STORESCU_PROPOSE[syntax]))
    stats = server.stats()
    assert stats["instances"] == len(files)
    assert stats["bytes"] == sum(p.stat().st_size for p in server.files())
    stored = {pydicom.dcmread(p).SOPInstanceUID: p for p in server.files()}
    for path in files:
        sent = pydicom.dcmread(path)
        ours = pydicom.dcmread(stored[sent.SOPInstanceUID])
        assert ours.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert ours.StudyInstanceUID == sent.StudyInstanceUID
        assert ours.get("PatientName") == sent.get("PatientName")
    events = server.events("stored")
    assert len(events) == len(files)
    assert all(e["status"] == "0x0000" and e["ms"] >= 0 and e["study_uid"] for e in events)


@pytest.mark.parametrize("syntax", sorted(BY_SYNTAX))
def test_stored_dataset_bytes_equal_sent_bytes(server: Server, scu: SCU, syntax: str) -> None:
    path = shipped(BY_SYNTAX[syntax])
    [status] = scu.store(path)
    assert status.Status == 0x0000
    [stored] = server.files()
    _, offset = split_dataset(path)
    assert stored_dataset(stored) == path.read_bytes()[offset:]
    meta = pydicom.dcmread(stored).file_meta
    assert meta.TransferSyntaxUID == syntax
    assert meta.SourceApplicationEntityTitle == "TESTSCU"


def test_identical_resend_succeeds_and_changes_nothing(server: Server, scu: SCU, tmp_path: Path) -> None:
    ds = synth.ct(patient_id="RESEND")
    [first] = scu.store(ds)
    assert first.Status == 0
    [stored] = server.files()
    before = (server.stats(), stored.stat().st_mtime_ns, stored.read_bytes())
    [again] = scu.store(ds)
    assert again.Status == 0x0000
    assert (server.stats(), stored.stat().st_mtime_ns, stored.read_bytes()) == before
    assert server.events("stored")[-1]["result"] == "already_stored"


def test_different_object_under_stored_sop_uid_keeps_stored_one(server: Server, scu: SCU) -> None:
    ds = synth.ct(patient_id="DUP")
    scu.store(ds)
    [stored] = server.files()
    original = stored.read_bytes()
    ds.PixelData = os.urandom(len(ds.PixelData))
    [status] = scu.store(ds)
    assert status.Status == 0xB006
    assert ds.SOPInstanceUID in status.ErrorComment and "kept" in status.ErrorComment
    assert stored.read_bytes() == original
    assert server.stats()["instances"] == 1


def test_missing_patient_id_never_joins_two_people(server: Server, scu: SCU) -> None:
    # Two unidentified patients (one without the element, one with it empty)
    # in two studies, plus a second image of the first study.
    a = synth.ct(patient_id=None, patient_name="Unknown^A")
    b = synth.ct(patient_id="", patient_name="Unknown^B")
    a2 = synth.ct(
        patient_id=None, patient_name="Unknown^A", study_uid=a.StudyInstanceUID, series_uid=a.SeriesInstanceUID
    )
    assert [s.Status for s in scu.store(a, b, a2)] == [0, 0, 0]
    stats = server.stats()
    assert (stats["patients"], stats["studies"], stats["instances"]) == (2, 2, 3)


def test_patient_key_is_normalised(server: Server, scu: SCU) -> None:
    same = [
        synth.ct(patient_id="KEY1"),
        synth.ct(patient_id="KEY1 "),  # trailing pad is not part of the ID
        synth.ct(patient_id="KEY1", issuer=""),  # empty issuer == missing issuer
    ]
    other = [synth.ct(patient_id="KEY1", issuer="HOSP_A"), synth.ct(patient_id="KEY2")]
    assert all(s.Status == 0 for s in scu.store(*same, *other))
    assert server.stats()["patients"] == 3
