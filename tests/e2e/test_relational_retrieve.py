"""Retrieve by the keys workstations use (issue 14 item 5): a STUDY-level
C-MOVE or C-GET naming studies by AccessionNumber or PatientID instead of
StudyInstanceUID; an identifier that matches nothing succeeds with zero
sub-operations and opens no sub-association."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server, StoreSCP


@dataclass
class Setup:
    server: Server
    dest: StoreSCP
    first: list[Dataset]
    second: list[Dataset]
    other: list[Dataset]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("relational")
    dest = StoreSCP(work)
    server = Server(work, extra_toml=dest.toml()).start()
    first = synth.series(3, patient_id="REL-1", AccessionNumber="ACC-R1", pixel_bytes=256)
    second = synth.series(2, patient_id="REL-1", AccessionNumber="ACC-R2", pixel_bytes=256)
    other = synth.series(2, patient_id="REL-2", AccessionNumber="ACC-R3", pixel_bytes=256)
    try:
        assert all(s.Status == 0 for s in SCU(server).store(*first, *second, *other))
        yield Setup(server, dest, first, second, other)
    finally:
        server.stop()
        dest.stop()


def sops(datasets: list[Dataset]) -> set[str]:
    return {str(ds.SOPInstanceUID) for ds in datasets}


def identifier(**keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def c_get(server: Server, keys: Dataset) -> tuple[Dataset, set[str]]:
    received: set[str] = set()

    def on_store(event: object) -> int:
        received.add(str(event.dataset.SOPInstanceUID))  # type: ignore[attr-defined]
        return 0x0000

    ae = AE(ae_title="RELGET")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title,
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])  # fmt: skip
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_get(keys, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    return responses[-1][0], received


def c_move(server: Server, keys: Dataset, destination: str = "DEST") -> Dataset:
    ae = AE(ae_title="RELMOVE")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_move(keys, destination, StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()
    final: Dataset = responses[-1][0]
    return final


def test_c_get_by_accession_number(setup: Setup) -> None:
    final, received = c_get(setup.server, identifier(AccessionNumber="ACC-R1"))
    assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 3
    assert received == sops(setup.first)


def test_c_get_by_patient_id_takes_all_of_the_patients_studies(setup: Setup) -> None:
    final, received = c_get(setup.server, identifier(PatientID="REL-1"))
    assert final.Status == 0x0000 and received == sops(setup.first + setup.second)


def test_c_move_by_accession_number(setup: Setup) -> None:
    for path in setup.dest.out.iterdir():
        path.unlink()
    final = c_move(setup.server, identifier(AccessionNumber="ACC-R2"))
    assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 2
    assert sops(setup.dest.received()) == sops(setup.second)


def test_nothing_matched_is_success_with_zero_and_no_sub_association(setup: Setup) -> None:
    before = setup.dest.log().count("Association Received")
    final = c_move(setup.server, identifier(AccessionNumber="NO-SUCH-ACCESSION"))
    assert final.Status == 0x0000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0, 0)
    final, received = c_get(setup.server, identifier(PatientID="NOBODY"))
    assert final.Status == 0x0000 and received == set()
    assert setup.dest.log().count("Association Received") == before


@pytest.mark.parametrize(
    ("keys", "comment"),
    [
        ({"AccessionNumber": "ACC-*"}, "AccessionNumber must be given without wildcards"),
        ({"PatientID": "*"}, "PatientID must be given without wildcards"),
        ({}, "StudyInstanceUID (or AccessionNumber or PatientID) is required"),
    ],
)
def test_universal_or_missing_keys_are_refused(setup: Setup, keys: dict[str, str], comment: str) -> None:
    final = c_move(setup.server, identifier(**keys))
    assert final.Status == 0xA900 and comment in final.ErrorComment
    setup.server.echoscu()


def test_series_level_still_needs_its_uid(setup: Setup, tmp_path: Path) -> None:
    keys = identifier(AccessionNumber="ACC-R1")
    keys.QueryRetrieveLevel = "SERIES"
    keys.StudyInstanceUID = setup.first[0].StudyInstanceUID
    final = c_move(setup.server, keys)
    assert final.Status == 0xA900 and "SeriesInstanceUID is required" in final.ErrorComment
