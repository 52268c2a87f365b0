"""Retrieves past the 16-bit counters, C-GET without the SCP role, and
requests on a presentation context of another SOP class (issue 11,
findings 5 and 14), against a real pacsd with pacsd's lean client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from pacsd.dimse.suboperations import Tally
from pacsd.testing import synth
from pacsd.wire import command, dataset, requestor
from tests.e2e import dimse_client
from tests.e2e.conftest import SCU, Server

GET = str(StudyRootQueryRetrieveInformationModelGet)
CT = str(CTImageStorage)
MANY = 65_600  # past 65 535: counts clamp, Message IDs wrap


def tiny_study(count: int) -> tuple[str, list[tuple[str, bytes]]]:
    """*count* two-byte CT objects of one study, encoded once and copied
    with a fixed-width SOP Instance UID patched in (pydicom per object
    would take longer than storing them)."""
    template = synth.ct(patient_id="MANY", pixel_bytes=2, sop_uid="1.2.826.0.1.3680043.9.7777.00000000")
    template.SeriesInstanceUID = synth.new_uid()
    data = dataset.encode(template, ExplicitVRLittleEndian)
    marker = b"1.2.826.0.1.3680043.9.7777.00000000"
    assert data.count(marker) == 1
    items = []
    for n in range(count):
        sop_uid = f"1.2.826.0.1.3680043.9.7777.{n:08d}"
        items.append((sop_uid, data.replace(marker, sop_uid.encode())))
    return str(template.StudyInstanceUID), items


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, int]]:
    server = Server(tmp_path_factory.mktemp("many")).start()
    try:
        study_uid, items = tiny_study(MANY)
        statuses = dimse_client.store_all(server.port, CT, items)
        assert statuses.count(0) == MANY, {hex(s) for s in statuses}
        yield server, study_uid, MANY
    finally:
        server.stop()


def test_sub_operations_are_counted_in_pynetdicoms_status_categories() -> None:
    tally = Tally(8)
    for n, status in enumerate([0x0000, 0x0001, 0x0107, 0x0116, 0xB000, 0xB007, 0xA700, 0xC000]):
        tally.count(status, f"1.2.{n}")
    assert (tally.completed, tally.warning, tally.failed) == (1, 5, 2)
    assert tally.failed_uids == ["1.2.6", "1.2.7"]
    assert tally.remaining == 0


def study_identifier(study_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


def test_c_get_past_65535_instances(many: tuple[Server, str, int]) -> None:
    server, study_uid, count = many
    link = dimse_client.associate(
        server.port, [build_context(GET, [ExplicitVRLittleEndian]), build_context(CT, [ExplicitVRLittleEndian])], [CT]
    )
    try:
        result = dimse_client.c_get(link, dimse_client.context_id(link, GET), study_identifier(study_uid))
    finally:
        requestor.release(link)
    assert result.status == 0x0000, result.comment
    assert len(result.stored) == len(set(result.stored)) == count
    # Message IDs run 1..65535 and round again.
    assert result.message_ids[:2] == [1, 2]
    assert result.message_ids[65534:65537] == [65535, 1, 2]
    # Counts clamp at 65 535 (US); Remaining reads 65 535 until fewer remain.
    assert result.pendings[0] == (65535, 1, 0, 0)
    assert result.pendings[-1] == (1, 65535, 0, 0)
    assert all(0 <= c <= 65535 for p in result.pendings for c in p)
    assert result.final_counts == (65535, 0, 0)
    assert server.events("get_done")[-1]["completed"] == count  # the log keeps the real figure
    server.echoscu()


def test_c_get_without_scp_role_is_refused_naming_the_role(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    try:
        objects = synth.series(3, patient_id="ROLE")
        assert all(s.Status == 0 for s in SCU(server).store(*objects))
        contexts = [build_context(GET, [ExplicitVRLittleEndian]), build_context(CT, [ExplicitVRLittleEndian])]
        link = dimse_client.associate(server.port, contexts)  # no SCP/SCU Role Selection
        try:
            result = dimse_client.c_get(
                link, dimse_client.context_id(link, GET), study_identifier(objects[0].StudyInstanceUID)
            )
        finally:
            requestor.release(link)
        assert result.status == 0xA702
        assert "SCP role" in result.comment and "CT Image Storage" in result.comment
        assert result.stored == []  # nothing attempted
        assert result.final_counts == (0, 3, 0)
        assert sorted(result.failed_list) == sorted(str(o.SOPInstanceUID) for o in objects)
        [event] = server.events("get_role_missing")
        assert event["instances"] == 3
    finally:
        server.stop()


def test_requests_on_a_context_of_another_sop_class_are_refused(server: Server) -> None:
    ct = synth.ct(patient_id="WRONGCTX")
    data = dataset.encode(ct, ExplicitVRLittleEndian)
    link = dimse_client.associate(
        server.port,
        [build_context(Verification, [ExplicitVRLittleEndian]), build_context(CT, [ExplicitVRLittleEndian])],
    )
    try:
        verification = dimse_client.context_id(link, str(Verification))
        requestor.send_c_store(link, verification, CT, str(ct.SOPInstanceUID), data, 1)
        refused = requestor.store_response(link, 1)
        assert refused.status == 0x0122
        assert "Verification" in refused.comment
        # A C-ECHO on the CT context: refused the same way.
        echo = command.encode(
            [
                (command.AFFECTED_SOP_CLASS, "UI", CT),
                (command.COMMAND_FIELD, "US", command.C_ECHO_RQ),
                (command.MESSAGE_ID, "US", 2),
                (command.DATASET_TYPE, "US", command.NO_DATASET),
            ]
        )
        link.send(dimse_client.context_id(link, CT), echo)
        answer = link.receive().command
        assert (answer.field, answer.us(command.STATUS)) == (command.C_ECHO_RSP, 0x0122)
        # The association still serves: the same object on its own context is stored.
        requestor.send_c_store(link, dimse_client.context_id(link, CT), CT, str(ct.SOPInstanceUID), data, 3)
        assert requestor.store_response(link, 3).status == 0x0000
    finally:
        requestor.release(link)
    assert server.stats()["instances"] == 1
    assert server.events("store_refused")[0]["status"] == "0x0122"
