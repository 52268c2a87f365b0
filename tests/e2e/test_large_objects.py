"""Large objects stream (issue 11, finding 3): receiving, storing,
comparing with a stored duplicate and sending a 256 MiB object keep the
server's memory within a constant overhead, against a real pacsd."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet  # type: ignore[attr-defined]

from pacsd.domain.limits import MiB
from pacsd.testing import synth
from pacsd.wire import dataset, requestor
from tests.e2e import dimse_client
from tests.e2e.conftest import Server
from tests.e2e.test_retrieve_limits import study_identifier

CT = str(CTImageStorage)
GET = str(StudyRootQueryRetrieveInformationModelGet)
SIZE = 256 * MiB
SPOOL = 8 * MiB
# What a large object may add to the server's peak memory, whatever its
# size: the spool's in-memory part, a few PDUs and read/compare chunks.
OVERHEAD = SPOOL + 40 * MiB


def test_a_256_mib_object_is_stored_compared_and_sent_in_constant_memory(tmp_path: Path) -> None:
    server = Server(tmp_path, extra_toml=f"[limits]\nspool_bytes = {SPOOL}\n").start()
    try:
        assert server.proc is not None
        server.echoscu()
        before = server.peak_rss()
        ds = synth.ct(patient_id="LARGE", pixel_bytes=16)
        ds.Rows, ds.Columns = 8192, SIZE // 2 // 8192
        ds.PixelData = bytes(range(256)) * (SIZE // 256)
        data = dataset.encode(ds, ExplicitVRLittleEndian)
        sop_uid = str(ds.SOPInstanceUID)
        link = dimse_client.associate(server.port, [build_context(CT, [ExplicitVRLittleEndian])])
        cx = dimse_client.context_id(link, CT)
        try:
            requestor.send_c_store(link, cx, CT, sop_uid, data, 1)
            assert requestor.store_response(link, 1).status == 0x0000
            requestor.send_c_store(link, cx, CT, sop_uid, data, 2)  # identical: compared chunk by chunk
            assert requestor.store_response(link, 2).status == 0x0000
            changed = data[:-1] + b"\x01"
            requestor.send_c_store(link, cx, CT, sop_uid, changed, 3)  # differs in its last byte
            assert requestor.store_response(link, 3).status == 0xB006
        finally:
            requestor.release(link)
        assert [e["result"] for e in server.events("stored")] == ["stored", "already_stored", "duplicate_kept"]
        assert server.peak_rss() - before < OVERHEAD
        assert server.temp_files() == []  # no spool file left behind

        received: list[str] = []
        link = dimse_client.associate(
            server.port,
            [build_context(GET, [ExplicitVRLittleEndian]), build_context(CT, [ExplicitVRLittleEndian])],
            [CT],
        )
        try:
            result = dimse_client.c_get(
                link,
                dimse_client.context_id(link, GET),
                study_identifier(str(ds.StudyInstanceUID)),
                on_store=lambda got: received.append(hashlib.sha256(got).hexdigest()),
            )
        finally:
            requestor.release(link)
        assert result.status == 0x0000, result.comment
        assert received == [hashlib.sha256(data).hexdigest()]
        growth = server.peak_rss() - before
        assert growth < OVERHEAD, f"peak memory grew by {growth / MiB:.0f} MiB"
        server.echoscu()
    finally:
        server.stop()
