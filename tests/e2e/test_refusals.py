"""Bad input gets a clear failure status and loses nothing.

Each case checks: the status and its comment, then that the index counts,
the stored files and the temporary area are exactly as before, and that
the server still answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server


def snapshot(server: Server) -> tuple[dict[str, int], list[tuple[Path, bytes]], list[Path]]:
    return server.stats(), [(p, p.read_bytes()) for p in server.files()], server.temp_files()


@pytest.fixture
def seeded(server: Server, scu: SCU) -> Dataset:
    """One stored object whose links the conflicting cases collide with."""
    ds = synth.ct(patient_id="OWNER", issuer="HOSP")
    assert scu.store(ds)[0].Status == 0
    return ds


def refuse(server: Server, scu: SCU, item: Dataset | Path, code: int, *words: str) -> str:
    before = snapshot(server)
    [status] = scu.store(item)
    assert status.Status == code, status
    comment = str(status.get("ErrorComment", ""))
    for word in words:
        assert word in comment, comment
    assert snapshot(server) == before
    assert server.events("store_refused")[-1]["reason"] == comment
    server.echoscu()
    return comment


def test_study_linked_to_another_patient_is_refused(server: Server, scu: SCU, seeded: Dataset) -> None:
    other = synth.ct(patient_id="INTRUDER", study_uid=seeded.StudyInstanceUID)
    refuse(server, scu, other, 0xC010, seeded.StudyInstanceUID, "'OWNER'", "'HOSP'", "'INTRUDER'")


def test_same_id_other_issuer_is_another_patient(server: Server, scu: SCU, seeded: Dataset) -> None:
    other = synth.ct(patient_id="OWNER", issuer="ELSEWHERE", study_uid=seeded.StudyInstanceUID)
    refuse(server, scu, other, 0xC010, seeded.StudyInstanceUID, "'ELSEWHERE'")


def test_series_linked_to_another_study_is_refused(server: Server, scu: SCU, seeded: Dataset) -> None:
    # Same patient, new study, but a series UID that belongs to the seeded
    # study: the new study row must not survive the refusal either.
    other = synth.ct(patient_id="OWNER", issuer="HOSP", series_uid=seeded.SeriesInstanceUID)
    refuse(server, scu, other, 0xC010, seeded.SeriesInstanceUID, seeded.StudyInstanceUID, other.StudyInstanceUID)


def test_instance_in_another_series_is_refused(server: Server, scu: SCU, seeded: Dataset) -> None:
    other = synth.ct(
        patient_id="OWNER", issuer="HOSP", study_uid=seeded.StudyInstanceUID, sop_uid=seeded.SOPInstanceUID
    )
    refuse(server, scu, other, 0xC010, seeded.SOPInstanceUID, seeded.SeriesInstanceUID, other.SeriesInstanceUID)


@pytest.mark.parametrize(
    "keyword, value, words",
    [
        ("StudyInstanceUID", None, ["Study Instance UID", "missing"]),
        ("StudyInstanceUID", "1.2..3", ["Study Instance UID", "not a valid UID"]),
        ("StudyInstanceUID", "1.2.3.", ["not a valid UID"]),
        ("StudyInstanceUID", "1.2.abc", ["not a valid UID"]),
        ("StudyInstanceUID", "1." + "2" * 63, ["not a valid UID"]),
        ("StudyInstanceUID", "../../../../tmp/evil", ["Study Instance UID", "not a valid UID"]),
        ("SeriesInstanceUID", "1.2/../../x", ["Series Instance UID", "not a valid UID"]),
        ("SeriesInstanceUID", "", ["Series Instance UID", "missing"]),
    ],
)
def test_invalid_uids_are_refused(
    server: Server, scu: SCU, seeded: Dataset, keyword: str, value: str | None, words: list[str]
) -> None:
    ds = synth.ct(patient_id="UIDS")
    if value is None:
        del ds[keyword]
    else:
        setattr(ds, keyword, value)
    refuse(server, scu, ds, 0xC001, *words)
    assert not list((server.data_dir.parent).glob("**/evil*"))


def test_path_traversal_in_sop_instance_uid_is_refused(
    server: Server, scu: SCU, seeded: Dataset, tmp_path: Path
) -> None:
    # The request carries the same bad UID, so request and dataset agree and
    # it is the UID syntax check that must catch it.
    ds = synth.ct(patient_id="UIDS", sop_uid="../../../../../../tmp/evil")
    path = synth.write(ds, tmp_path / "x.dcm")
    refuse(server, scu, path, 0xC001, "SOP Instance UID", "not a valid UID")
    assert not Path("/tmp/evil.dcm").exists()


def patched_request(tmp_path: Path, ds: Dataset, old: str, new: str) -> Path:
    """A Part 10 file of *ds* whose file meta (hence the C-STORE request
    pynetdicom sends) says *new* where the dataset says *old*."""
    assert len(old) == len(new)
    path = synth.write(ds, tmp_path / "x.dcm")
    data = path.read_bytes()
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    path.write_bytes(data[:meta_end].replace(old.encode(), new.encode()) + data[meta_end:])
    return path


def test_dataset_sop_instance_differs_from_request(server: Server, scu: SCU, seeded: Dataset, tmp_path: Path) -> None:
    ds = synth.ct(patient_id="MISMATCH")
    sop = ds.SOPInstanceUID
    request_uid = sop[:-1] + ("1" if sop[-1] != "1" else "2")
    path = patched_request(tmp_path, ds, sop, request_uid)
    refuse(server, scu, path, 0xC002, sop, request_uid, "request")


def test_dataset_sop_class_differs_from_request(server: Server, scu: SCU, seeded: Dataset, tmp_path: Path) -> None:
    ds = synth.ct(patient_id="MISMATCH")
    path = patched_request(tmp_path, ds, ds.SOPClassUID, MRImageStorage)
    refuse(server, scu, path, 0xA900, MRImageStorage, ds.SOPClassUID)


def _part10_cut(tmp_path: Path, ds: Dataset, syntax: str, drop: int) -> Path:
    path = synth.write(ds, tmp_path / "cut.dcm", syntax)
    data = path.read_bytes()
    path.write_bytes(data[:-drop])
    return path


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", ImplicitVRLittleEndian])
def test_truncated_pixel_data_is_refused(
    server: Server, scu: SCU, seeded: Dataset, tmp_path: Path, syntax: str
) -> None:
    path = _part10_cut(tmp_path, synth.ct(patient_id="CUT"), syntax, drop=1000)
    refuse(server, scu, path, 0xC000, "truncated", "(7FE0,0010)")


def test_truncated_inside_a_sequence_is_refused(server: Server, scu: SCU, seeded: Dataset, tmp_path: Path) -> None:
    ds = synth.ct(patient_id="CUT")
    del ds.PixelData
    item = Dataset()
    item.RequestedProcedureID, item.RequestedProcedureDescription = "RP1", "a long enough description"
    ds.RequestAttributesSequence = [item]  # (0040,0275): the last element
    path = synth.write(ds, tmp_path / "seq.dcm")
    path.write_bytes(path.read_bytes()[:-17])  # inside the item
    refuse(server, scu, path, 0xC000, "truncated")


def test_truncated_deflate_stream_is_refused(server: Server, scu: SCU, seeded: Dataset, tmp_path: Path) -> None:
    # Compressible pixels, so the deflate stream is short and cut mid-way.
    ds = synth.ct(patient_id="CUT")
    ds.PixelData = b"\0" * len(ds.PixelData)
    path = _part10_cut(tmp_path, ds, DeflatedExplicitVRLittleEndian, drop=40)
    refuse(server, scu, path, 0xC000, "truncated")


def test_garbage_dataset_is_refused(server: Server, scu: SCU, seeded: Dataset, tmp_path: Path) -> None:
    path = synth.write(synth.ct(patient_id="JUNK"), tmp_path / "junk.dcm")
    data = bytearray(path.read_bytes())
    # Keep the file meta, replace the dataset by noise of the same length.
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    data[meta_end:] = bytes((i * 37 + 11) % 256 for i in range(len(data) - meta_end))
    path.write_bytes(bytes(data))
    refuse(server, scu, path, 0xC000)
