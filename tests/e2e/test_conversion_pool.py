"""The conversion pool of a serving process: bounded by [transcode]
processes, and gone with the server even after a kill -9."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import MRImageStorage, StudyRootQueryRetrieveInformationModelGet  # type: ignore[attr-defined]

from pacsd.testing import synth
from tests.e2e.conftest import Server

COPIES = 6


def _children(pid: int, marker: bytes = b"spawn_main") -> list[int]:
    """The processes whose parent is *pid* and whose command line has *marker*."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if ppid == pid and marker in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _jpeg_ls_study() -> list[Dataset]:
    found = get_testdata_file("MR_small_jpeg_ls_lossless.dcm", download=False)
    assert found is not None
    study = synth.new_uid()
    copies = []
    for _ in range(COPIES):
        ds = pydicom.dcmread(str(found))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, synth.new_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = synth.new_uid()
        copies.append(ds)
    return copies


def _get_uncompressed(server: Server, study_uid: str) -> tuple[int, list[Dataset]]:
    arrived: list[Dataset] = []

    def on_store(event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        arrived.append(ds)
        return 0x0000

    ae = AE(ae_title="GETTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(MRImageStorage, [ExplicitVRLittleEndian])
    role = build_role(MRImageStorage, scp_role=True)
    handlers = [(evt.EVT_C_STORE, on_store)]
    assoc = ae.associate("127.0.0.1", server.port, ae_title="PACSD", ext_neg=[role], evt_handlers=handlers)
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = study_uid
    try:
        responses = list(assoc.send_c_get(keys, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    return responses[-1][0].Status, arrived


def _store(server: Server, datasets: list[Dataset]) -> None:
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(MRImageStorage, [JPEGLSLossless])
    assoc = ae.associate("127.0.0.1", server.port, ae_title="PACSD")
    try:
        assert [assoc.send_c_store(ds).Status for ds in datasets] == [0] * len(datasets)
    finally:
        assoc.release()


def test_conversions_run_in_the_configured_number_of_processes_which_end_with_a_killed_server(tmp_path: Path) -> None:
    server = Server(tmp_path, extra_toml="[transcode]\nprocesses = 1\n").start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        deadline = time.monotonic() + 30
        while not _children(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        started = _children(pid)
        assert len(started) == 1, started  # started with the server, in the background
        study = _jpeg_ls_study()
        _store(server, study)
        status, arrived = _get_uncompressed(server, study[0].StudyInstanceUID)
        assert status == 0x0000 and len(arrived) == COPIES
        assert {str(ds.file_meta.TransferSyntaxUID) for ds in arrived} == {ExplicitVRLittleEndian}
        assert all(np.array_equal(ds.pixel_array, study[0].pixel_array) for ds in arrived)
        workers = _children(pid)
        assert workers == started  # six conversions, the one process
        converted = server.events("retrieve_transfer_syntax")
        assert len(converted) == COPIES
        assert {(e["from"], e["to"]) for e in converted} == {(JPEGLSLossless, ExplicitVRLittleEndian)}

        server.kill9()
        deadline = time.monotonic() + 10
        while any(_alive(worker) for worker in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(worker) for worker in workers), "a conversion process outlived its server"
    finally:
        server.stop()
