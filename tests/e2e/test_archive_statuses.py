"""What the Archive's outcomes and errors become on the wire, where the
reading of issue 12 found them wrong: a bug in the index work is 0x0110
(not "out of resources"), an arrival for no fetch of ours has a status of
its own, and a caching-proxy fetch that cannot get its study's lock answers
0xA702 instead of ending the client's association."""

from __future__ import annotations

import fcntl
import sqlite3
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_role
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
)

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server, free_port

UPSTREAM_AE = "UPSTREAM"


def proxy_toml(fetch_timeout: float) -> str:
    """A caching proxy whose upstream never answers (nothing listens there)."""
    return (
        f'[remotes.UP]\nae_title = "{UPSTREAM_AE}"\nhost = "127.0.0.1"\nport = {free_port()}\n'
        f'[virtual]\nupstreams = ["UP"]\n[virtual.UP]\nfetch_timeout = {fetch_timeout}\nconnect_timeout = 1\n'
    )


def test_an_unexpected_index_error_is_0110_logged_with_its_traceback(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    try:
        assert [s.Status for s in SCU(server).store(synth.ct(patient_id="FIRST"))] == [0x0000]
    finally:
        server.stop()
    # A bug's stand-in: the table a series' Request Attributes go to is gone,
    # so indexing such an object fails with an SQL error, not a disk error.
    db = sqlite3.connect(server.data_dir / "index.sqlite")
    db.execute("ALTER TABLE series_request RENAME TO series_request_gone")
    db.commit()
    db.close()
    server.start()
    try:
        request = Dataset()
        request.RequestedProcedureID = "RP-1"
        broken = synth.ct(patient_id="REQ", RequestAttributesSequence=[request])
        plain = synth.ct(patient_id="PLAIN")
        statuses = SCU(server).store(broken, plain)
        assert statuses[0].Status == 0x0110
        assert statuses[0].ErrorComment.startswith("internal error: ")
        assert statuses[1].Status == 0x0000  # the server goes on storing
        [failed] = server.events("store_failed")
        assert failed["sop_instance_uid"] == broken.SOPInstanceUID and "Traceback" in failed.get("exception", "")
        assert server.stats()["instances"] == 2  # FIRST and PLAIN; nothing of the broken one
        assert not [p for p in server.files() if broken.SOPInstanceUID in p.name]
    finally:
        server.stop()


def test_an_arrival_for_no_fetch_of_ours_has_its_own_status(tmp_path: Path) -> None:
    server = Server(tmp_path, extra_toml=proxy_toml(5)).start()
    try:
        ds = synth.ct(patient_id="STRAY")
        ae = AE(ae_title=UPSTREAM_AE)  # as the upstream would send it, for a C-MOVE we never made
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
        assert assoc.is_established
        try:
            status = assoc.send_c_store(ds, originator_aet=server.ae_title, originator_id=4242)
        finally:
            assoc.release()
        assert status.Status == 0xC011
        assert status.ErrorComment == "no fetch is waiting for Move Originator Message ID 4242"
        assert server.stats()["instances"] == 0
        server.echoscu()
    finally:
        server.stop()


def test_a_fetch_that_cannot_get_its_study_lock_answers_a702(tmp_path: Path) -> None:
    server = Server(tmp_path, extra_toml=proxy_toml(1.5)).start()
    study = synth.ct(patient_id="LOCKED").StudyInstanceUID
    # Another worker's fetch of the same study, as far as the lock knows.
    lock = server.data_dir / "staging" / "locks" / f"study-{study}.lock"
    with lock.open("ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            ae = AE(ae_title="GETTER")
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
            ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
            assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title,
                                 ext_neg=[build_role(CTImageStorage, scp_role=True)])  # fmt: skip
            assert assoc.is_established
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "STUDY"
            identifier.StudyInstanceUID = study
            responses = list(assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet))
            assert assoc.is_established, "the client's association must outlive the lock wait"
            assoc.release()
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    final, _ = responses[-1]
    assert final.Status == 0xA702
    assert f"study {study} not fetched: waited" in final.ErrorComment
    assert [e["study_uid"] for e in server.events("fetch_lock_timeout")] == [study]
    server.echoscu()
    server.stop()
