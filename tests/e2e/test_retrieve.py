"""C-MOVE to a real storescp and C-GET with getscu, against a running pacsd."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelGet,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacsd.domain.part10 import stored_dataset
from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server, StoreSCP, free_port, shipped

BIG = 120


@dataclass
class Setup:
    server: Server
    dest: StoreSCP
    s1: list[Dataset]  # three CT images
    s2: list[Dataset]  # two CT images and one JPEG 2000 image
    big: list[Dataset]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("retrieve")
    dest = StoreSCP(work)
    gone = f'[remotes.GONE]\nhost = "127.0.0.1"\nport = {free_port()}\n'
    server = Server(work, extra_toml=dest.toml() + gone)
    try:
        server.start()
        s1 = synth.series(3, patient_id="MOVE1", patient_name="Move^One")
        s2 = synth.series(2, patient_id="MOVE2", patient_name="Move^Two")
        j2k = pydicom.dcmread(shipped("JPEG2000.dcm"))
        j2k.PatientID, j2k.PatientName = "MOVE2", "Move^Two"
        j2k.StudyInstanceUID, j2k.SeriesInstanceUID = s2[0].StudyInstanceUID, synth.new_uid()
        big = synth.series(BIG, patient_id="MOVE3", pixel_bytes=64)
        statuses = SCU(server).store(*s1, *s2, j2k, *big)
        assert all(s.Status == 0 for s in statuses)
        yield Setup(server, dest, s1, [*s2, j2k], big)
    finally:  # also when setting up failed
        server.stop()
        dest.stop()


@pytest.fixture
def dest(setup: Setup) -> StoreSCP:
    for path in setup.dest.out.iterdir():
        path.unlink()
    return setup.dest


def sops(datasets: list[Dataset]) -> set[str]:
    return {ds.SOPInstanceUID for ds in datasets}


def dataset_bytes(path: Path) -> bytes:
    """A Part 10 file's dataset bytes: all after its file meta (PS3.10 7.1:
    preamble, 'DICM', then group 0002 led by its group length)."""
    offset = 128 + 4 + 12 + int(read_file_meta_info(path).FileMetaInformationGroupLength)
    return path.read_bytes()[offset:]


def values(ds: Dataset) -> dict[int, object]:
    """Every element's value by tag (not its VR: a syntax change may alter that)."""
    return {int(elem.tag): elem.value for elem in ds}


def stored_file(server: Server, sop_instance_uid: str) -> Path:
    [path] = [p for p in server.files() if p.stem == sop_instance_uid]
    return path


@dataclass
class Final:
    """The final C-GET/C-MOVE response as DCMTK's -d dump shows it."""

    status: int
    remaining: int
    completed: int
    failed: int
    warning: int


def final_response(stderr: str, rsp: str = "C-GET RSP") -> Final:
    """Parse the last *rsp* message a DCMTK getscu/movescu -d run received."""
    _, found, tail = stderr.rpartition(f"Message Type                  : {rsp}")
    assert found, f"no {rsp} in:\n{stderr[-2000:]}"
    block = tail.split("END DIMSE MESSAGE", 1)[0]

    def field(name: str) -> str:
        match = re.search(rf"{name}\s*: (0x[0-9a-fA-F]{{4}}|\w+)", block)
        assert match, f"no {name} in the final {rsp}:\n{block}"
        return match.group(1)

    def count(name: str) -> int:
        value = field(f"{name} Suboperations")
        return 0 if value == "none" else int(value)

    return Final(
        int(field("DIMSE Status"), 16), count("Remaining"), count("Completed"), count("Failed"), count("Warning")
    )


def test_move_study_to_storescp(setup: Setup, dest: StoreSCP) -> None:
    study = setup.s1[0].StudyInstanceUID
    result = setup.server.retrieve(
        "movescu", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}", extra=("-v", "-aem", "DEST")
    )
    assert result.returncode == 0, result.stderr
    assert "Received Final Move Response (Success)" in result.stderr
    assert sops(dest.received()) == sops(setup.s1)
    # Sub-operations name who asked for them (PS3.7 C-STORE Move Originator).
    log = dest.log()
    assert "Move Originator AE Title      : RETRIEVER" in log
    assert [e["instances"] for e in setup.server.events("move_started")][-1] == 3


def test_moved_objects_keep_their_bytes(setup: Setup, dest: StoreSCP) -> None:
    image = setup.s1[1]
    setup.server.retrieve(
        "movescu", "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={image.StudyInstanceUID}",
        f"SeriesInstanceUID={image.SeriesInstanceUID}", f"SOPInstanceUID={image.SOPInstanceUID}",
        extra=("-aem", "DEST"),
    )  # fmt: skip
    [path] = [p for p in dest.out.iterdir() if p.is_file()]
    received = pydicom.dcmread(path)
    assert received.SOPInstanceUID == image.SOPInstanceUID
    assert received.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    # Byte for byte the dataset pacsd stored: nothing decoded and re-encoded.
    assert dataset_bytes(path) == stored_dataset(stored_file(setup.server, image.SOPInstanceUID))


def test_move_patient_level_patient_root(setup: Setup, dest: StoreSCP) -> None:
    result = setup.server.retrieve(
        "movescu", "-P", "QueryRetrieveLevel=PATIENT", "PatientID=MOVE1", extra=("-aem", "DEST")
    )
    assert result.returncode == 0
    assert sops(dest.received()) == sops(setup.s1)


def test_move_series_level(setup: Setup, dest: StoreSCP) -> None:
    ct = setup.s2[0]
    setup.server.retrieve(
        "movescu", "-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={ct.StudyInstanceUID}",
        f"SeriesInstanceUID={ct.SeriesInstanceUID}", extra=("-aem", "DEST"),
    )  # fmt: skip
    assert sops(dest.received()) == sops(setup.s2[:2])


def test_unknown_destination_is_a801_and_nothing_is_sent(setup: Setup, dest: StoreSCP) -> None:
    study = setup.s1[0].StudyInstanceUID
    result = setup.server.retrieve(
        "movescu", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}", extra=("-v", "-aem", "NOSUCHAE")
    )
    assert "Received Final Move Response (Refused: MoveDestinationUnknown)" in result.stderr
    assert dest.received() == []
    assert setup.server.events("move_destination_unknown")[-1]["destination"] == "NOSUCHAE"


def _move(setup: Setup, destination: str, keys: Dataset) -> list[tuple[Dataset, Dataset | None]]:
    ae = AE(ae_title="PYMOVE")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", setup.server.port, ae_title="PACSD")
    try:
        return list(assoc.send_c_move(keys, destination, StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()


def test_compressed_object_is_converted_for_an_uncompressed_only_destination(setup: Setup, dest: StoreSCP) -> None:
    # storescp takes only uncompressed syntaxes: the JPEG 2000 image is
    # decoded on the way out, the CT images go as stored.
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = setup.s2[0].StudyInstanceUID
    responses = _move(setup, "DEST", keys)
    final, identifier = responses[-1]
    assert final.Status == 0x0000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (3, 0)
    assert identifier is None
    assert sops(dest.received()) == sops(setup.s2)
    converted = [
        e
        for e in setup.server.events("retrieve_transfer_syntax")
        if e["sop_instance_uid"] == setup.s2[2].SOPInstanceUID
    ]
    assert (
        converted
        and converted[-1]["from"] == JPEG2000
        and converted[-1]["to"] in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    )


def test_unreachable_destination(setup: Setup, dest: StoreSCP) -> None:
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = setup.s1[0].StudyInstanceUID
    final, _ = _move(setup, "GONE", keys)[-1]
    assert final.Status == 0xA801
    setup.server.echoscu()


def test_move_identifier_without_the_level_key_fails_with_comment(setup: Setup, dest: StoreSCP) -> None:
    keys = Dataset()
    keys.QueryRetrieveLevel = "SERIES"
    keys.StudyInstanceUID = setup.s1[0].StudyInstanceUID
    final, _ = _move(setup, "DEST", keys)[-1]
    assert final.Status == 0xA900
    assert "SeriesInstanceUID is required" in final.ErrorComment
    assert dest.received() == []


def test_cancel_mid_move(setup: Setup, dest: StoreSCP) -> None:
    study = setup.big[0].StudyInstanceUID
    result = setup.server.retrieve(
        "movescu", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}",
        extra=("-v", "-aem", "DEST", "--cancel", "3"),
    )  # fmt: skip
    assert "Received Final Move Response (Cancel" in result.stderr, result.stderr[-2000:]
    assert 3 <= len(dest.received()) < BIG
    assert setup.server.events("retrieve_cancelled")


def test_get_study_with_getscu(setup: Setup, tmp_path: Path) -> None:
    study = setup.s1[0].StudyInstanceUID
    result = setup.server.retrieve(
        "getscu", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}", extra=("-d",), out=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert final_response(result.stderr) == Final(0x0000, 0, 3, 0, 0)
    files = sorted(tmp_path.iterdir())
    received = {pydicom.dcmread(p).SOPInstanceUID: p for p in files}
    assert len(files) == 3 and set(received) == sops(setup.s1)
    # getscu is sent implicit VR (pacsd picks that syntax for its storage
    # contexts), so the values are compared, element by element.
    for sop, path in received.items():
        assert values(pydicom.dcmread(path)) == values(pydicom.dcmread(stored_file(setup.server, sop))), sop


def test_get_patient_root_converts_for_uncompressed_only_getscu(setup: Setup, tmp_path: Path) -> None:
    # getscu proposes uncompressed storage only: the JPEG 2000 image is decoded for it.
    result = setup.server.retrieve(
        "getscu", "-P", "QueryRetrieveLevel=PATIENT", "PatientID=MOVE2", extra=("-d",), out=tmp_path
    )
    received = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p) for p in tmp_path.iterdir())}
    assert sorted(received) == sorted(sops(setup.s2))
    assert not received[setup.s2[2].SOPInstanceUID].file_meta.TransferSyntaxUID.is_compressed
    assert final_response(result.stderr) == Final(0x0000, 0, 3, 0, 0)


def test_get_failed_list_names_the_refused_object(setup: Setup) -> None:
    # getscu does not read the final response's identifier: pynetdicom does.
    # Secondary Capture offered only in JPEG Baseline, which pacsd does not
    # encode: the JPEG 2000 image (Secondary Capture) fails, the CT images go.
    arrived: list[str] = []

    def on_store(event: evt.Event) -> int:
        arrived.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    ae = AE(ae_title="PYGET")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(SecondaryCaptureImageStorage, [JPEGBaseline8Bit])
    roles = [build_role(storage, scp_role=True) for storage in (CTImageStorage, SecondaryCaptureImageStorage)]
    assoc = ae.associate(
        "127.0.0.1", setup.server.port, ae_title="PACSD", ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    keys = Dataset()
    keys.QueryRetrieveLevel = "PATIENT"
    keys.PatientID = "MOVE2"
    try:
        responses = list(assoc.send_c_get(keys, PatientRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    final, identifier = responses[-1]
    assert final.Status == 0xB000
    counts = (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations)
    assert (*counts, final.NumberOfWarningSuboperations) == (2, 1, 0)
    assert identifier is not None and identifier.FailedSOPInstanceUIDList == setup.s2[2].SOPInstanceUID
    assert "none of which pacsd can encode" in final.ErrorComment
    assert sorted(arrived) == sorted(sops(setup.s2[:2]))


def test_cancel_mid_get(setup: Setup) -> None:
    # getscu has no --cancel: pynetdicom sends the C-CANCEL after 3 stores.
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    ae = AE(ae_title="PYGET")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    role = build_role(CTImageStorage, scp_role=True)
    assoc = ae.associate(
        "127.0.0.1", setup.server.port, ae_title="PACSD", ext_neg=[role], evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = setup.big[0].StudyInstanceUID
    statuses = []
    try:
        for status, _ in assoc.send_c_get(keys, StudyRootQueryRetrieveInformationModelGet, msg_id=7):
            statuses.append(status.Status)
            if len(statuses) == 3:
                assoc.send_c_cancel(7, query_model=StudyRootQueryRetrieveInformationModelGet)
    finally:
        assoc.release()
    assert statuses[-1] == 0xFE00
    assert 3 <= len(received) < BIG
    assert setup.server.events("retrieve_cancelled")
