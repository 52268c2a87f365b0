"""Issue 11, findings 1 (C-STORE part) and 8: what a stored dataset may cost
and which of its values the index takes.

A deflate bomb is refused within a memory bound; a value the index cannot
hold (an IS past 32 bits, a date that is not a date) is stored with its
index field empty and a warning, never refused as "out of resources".
"""

from __future__ import annotations

import threading
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from pacsd.domain.limits import MiB
from pacsd.testing import synth
from pacsd.testing.raw import DEFLATED, EXPLICIT_LE, deflate_bomb, part10, small_header, with_raw
from tests.e2e.conftest import SCU, Server

# The server's peak RSS may grow by at most this much while refusing the
# bomb. Refusal stops after max_inflate_ratio * (input so far) past
# inflate_ratio_after, about 2 MiB of output; inflating it whole took the
# peak up by more than the bomb's 256 MiB.
RSS_GROWTH_BOUND = 48 * MiB


class Bystander:
    """A well-behaved client, echoing and storing small objects until stopped."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stored: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        while True:
            try:
                self.server.echoscu()
                ds = synth.ct(patient_id="BYSTANDER", pixel_bytes=512)
                [status] = SCU(self.server, "BYSTANDER").store(ds)
                if status.Status != 0x0000:
                    self.failures.append(f"store: 0x{status.Status:04X}")
                else:
                    self.stored.append(ds.SOPInstanceUID)
            except AssertionError as exc:
                self.failures.append(str(exc))
            if self._stop.is_set():  # at least one round, even after a fast refusal
                return


# -- against a real server ---------------------------------------------------


def test_deflate_bomb_c_store_refused_within_memory_bound(server: Server, scu: SCU, tmp_path: Path) -> None:
    assert server.proc is not None
    header = small_header()
    bomb = part10(tmp_path / "bomb.dcm", header, DEFLATED, deflate_bomb(header))
    assert bomb.stat().st_size < MiB
    scu.store(synth.ct(patient_id="WARMUP", pixel_bytes=512))  # imports and caches paid before measuring
    before = server.peak_rss()
    with Bystander(server) as bystander:
        [status] = scu.store(bomb)
    after = server.peak_rss()

    assert status.Status == 0xC003
    assert "max_inflate_ratio" in status.ErrorComment
    assert after - before < RSS_GROWTH_BOUND, f"peak RSS grew by {(after - before) / MiB:.1f} MiB"
    [event] = server.events("budget_exceeded")
    assert event["budget"] == "max_inflate_ratio" and event["calling_ae"] == "TESTSCU" and event["reason"]
    [refused] = server.events("store_refused")
    assert refused["status"] == "0xC003" and refused["sop_instance_uid"] == header.SOPInstanceUID
    # Nothing of the bomb stored; the bystander served throughout.
    assert not bystander.failures, bystander.failures
    assert bystander.stored
    assert server.stats()["instances"] == 1 + len(bystander.stored)
    assert all(header.SOPInstanceUID not in str(path) for path in server.files())
    assert not server.temp_files()
    server.echoscu()


def test_out_of_range_series_number_is_stored_with_it_empty(server: Server, scu: SCU, tmp_path: Path) -> None:
    ds = synth.ct(patient_id="IS8", pixel_bytes=512)
    data = with_raw(ds, SeriesNumber=("IS", b"99999999999999999999"))
    path = part10(tmp_path / "is.dcm", ds, EXPLICIT_LE, data)
    with Bystander(server) as bystander:
        [status] = scu.store(path)
    assert status.Status == 0x0000
    [event] = server.events("index_value_ignored")
    assert event["sop_instance_uid"] == ds.SOPInstanceUID and event["level"] == "warning"
    assert event["values"] == [
        {"keyword": "SeriesNumber", "value": "99999999999999999999", "why": "integer string outside -2^31..2^31-1"}
    ]
    assert not bystander.failures, bystander.failures
    assert not server.events("store_refused")

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = ds.StudyInstanceUID
    query.SeriesInstanceUID = ""
    query.SeriesNumber = ""
    ae = AE(ae_title="FINDER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    matches = [identifier for status, identifier in answers if status and status.Status == 0xFF00]
    assert answers[-1][0].Status == 0x0000
    [match] = matches
    assert match.SeriesInstanceUID == ds.SeriesInstanceUID
    assert match.SeriesNumber in ("", None)
