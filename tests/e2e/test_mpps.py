"""MPPS N-CREATE / N-SET against a real `pacsd serve`, with pynetdicom as
the modality: the state rules of PS3.4 F.7, the worklist item following
the step, an unscheduled exam getting its patient, and the performed
series kept with the step."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server, pacsd_cmd


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("mpps")).start()
    yield srv
    srv.stop()


@pytest.fixture
def assoc(server: Server) -> Iterator[Association]:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    association = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert association.is_established
    yield association
    association.release()


def scheduled(server: Server, patient_id: str) -> tuple[str, str]:
    """A worklist item for *patient_id*, added with `pacsd worklist add`; its (study UID, SPS ID)."""
    item = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Step^Patient"}]},
        "00100020": {"vr": "LO", "Value": [patient_id]},
        "00400100": {"vr": "SQ", "Value": [{"00080060": {"vr": "CS", "Value": ["CT"]},
                                           "00400002": {"vr": "DA", "Value": ["20261201"]}}]},
    }  # fmt: skip
    path = server.workdir / f"{patient_id}.json"
    path.write_text(json.dumps(item))
    subprocess.run(pacsd_cmd("worklist", "add", "--config", str(server.config), str(path)), check=True,
                   capture_output=True)  # fmt: skip
    return step_of(server, patient_id)[:2]


def step_of(server: Server, patient_id: str) -> tuple[str, str, str]:
    cmd = pacsd_cmd("worklist", "list", "--config", str(server.config), "--all", "--json", "--patient-id", patient_id)
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    [row] = json.loads(result.stdout)
    return row["StudyInstanceUID"], row["ScheduledProcedureStepID"], row["ScheduledProcedureStepStatus"]


def create_attributes(patient_id: str, study_uid: str = "", sps_id: str = "", status: str = "IN PROGRESS") -> Dataset:
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = study_uid or generate_uid()
    step.ScheduledProcedureStepID = sps_id
    step.AccessionNumber = ""
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientName = "Step^Patient"
    ds.PatientID = patient_id
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "MODALITY"
    ds.PerformedProcedureStepStartDate = "20261201"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepStatus = status
    ds.Modality = "CT"
    ds.PerformedSeriesSequence = []
    return ds


def final(status: str, series_uid: str = "") -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261201"
    ds.PerformedProcedureStepEndTime = "103000"
    if series_uid:
        item = Dataset()
        item.SeriesInstanceUID = series_uid
        item.ReferencedImageSequence = []
        ds.PerformedSeriesSequence = [item]
    return ds


def test_a_scheduled_step_is_started_then_completed_with_its_series(server: Server, assoc: Association) -> None:
    study_uid, sps_id = scheduled(server, "MPPS-1")
    sop_uid = generate_uid()
    status, _ = assoc.send_n_create(
        create_attributes("MPPS-1", study_uid, sps_id), ModalityPerformedProcedureStep, sop_uid
    )
    assert status.Status == 0x0000
    assert step_of(server, "MPPS-1")[2] == "STARTED"
    ct = synth.ct(patient_id="MPPS-1", study_uid=study_uid)
    assert SCU(server).store(ct)[0].Status == 0x0000
    status, _ = assoc.send_n_set(final("COMPLETED", ct.SeriesInstanceUID), ModalityPerformedProcedureStep, sop_uid)
    assert status.Status == 0x0000
    assert step_of(server, "MPPS-1")[2] == "COMPLETED"
    # Which images did this procedure produce: the step's series, joined to the index.
    with sqlite3.connect(f"file:{server.data_dir / 'index.sqlite'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT i.sop_uid FROM mpps m JOIN mpps_series ms ON ms.mpps_pk = m.id"
            " JOIN series se ON se.series_uid = ms.series_uid JOIN instance i ON i.series_pk = se.id"
            " WHERE m.sop_uid = ?",
            (sop_uid,),
        ).fetchall()
    assert rows == [(ct.SOPInstanceUID,)]
    # After COMPLETED the step may no longer be updated (F.7.2.2.2).
    status, _ = assoc.send_n_set(final("DISCONTINUED"), ModalityPerformedProcedureStep, sop_uid)
    assert status.Status == 0x0110
    assert status.ErrorComment == "Performed Procedure Step Object may no longer be updated"
    assert status.ErrorID == 0xA710
    assert [e["event"] for e in server.events("mpps_created") + server.events("mpps_updated")] == [
        "mpps_created", "mpps_updated",
    ]  # fmt: skip


def test_state_rules(server: Server, assoc: Association) -> None:
    sop_uid = generate_uid()
    status, _ = assoc.send_n_create(create_attributes("MPPS-2", status="COMPLETED"), ModalityPerformedProcedureStep,
                                    sop_uid)  # fmt: skip
    assert status.Status == 0x0106 and "PerformedProcedureStepStatus" in status.ErrorComment
    status, _ = assoc.send_n_create(create_attributes("MPPS-2"), ModalityPerformedProcedureStep, sop_uid)
    assert status.Status == 0x0000
    status, _ = assoc.send_n_create(create_attributes("MPPS-2"), ModalityPerformedProcedureStep, sop_uid)
    assert status.Status == 0x0111  # duplicate SOP instance
    status, _ = assoc.send_n_set(final("COMPLETED"), ModalityPerformedProcedureStep, generate_uid())
    assert status.Status == 0x0112  # no such SOP instance
    fixed = Dataset()
    fixed.PatientID = "SOMEONE-ELSE"
    status, _ = assoc.send_n_set(fixed, ModalityPerformedProcedureStep, sop_uid)
    assert status.Status == 0x0106 and "PatientID may not be changed by N-SET" in status.ErrorComment
    status, _ = assoc.send_n_set(final("FINISHED"), ModalityPerformedProcedureStep, sop_uid)
    assert status.Status == 0x0106 and "'FINISHED' is not one of" in status.ErrorComment
    status, _ = assoc.send_n_set(final("DISCONTINUED"), ModalityPerformedProcedureStep, sop_uid)
    assert status.Status == 0x0000
    assert len(server.events("mpps_refused")) >= 5
    server.echoscu()


def test_an_unscheduled_exam_gets_its_patient_by_key(server: Server, assoc: Association) -> None:
    before = server.stats()["patients"]
    status, _ = assoc.send_n_create(create_attributes("UNSCHEDULED-9"), ModalityPerformedProcedureStep, generate_uid())
    assert status.Status == 0x0000
    assert server.stats()["patients"] == before + 1
    # Its images land on that same patient.
    assert SCU(server).store(synth.ct(patient_id="UNSCHEDULED-9", issuer=None))[0].Status == 0x0000
    assert server.stats()["patients"] == before + 1
