"""A modality in a process of its own, for the MPPS race: waits until its
start file exists, then sends COUNT N-CREATEs for one patient and prints
their statuses as JSON. (Many pynetdicom associations in the test's own
process, beside its HTTP and C-STORE threads, made the client, not the
server, miss responses now and then.)"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]


def attributes(patient_id: str, issuer: str) -> Dataset:
    ds = Dataset()
    ds.PatientName = "Race^Mpps"
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = issuer
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepStartDate = "20261201"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.Modality = "CT"
    ds.ScheduledStepAttributesSequence = []
    return ds


def main(port: int, called_ae: str, count: int, start: Path, patient_id: str, issuer: str) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    statuses: list[int] = []
    if assoc.is_established:
        while not start.exists():
            time.sleep(0.005)
        for _ in range(count):
            status, _ = assoc.send_n_create(
                attributes(patient_id, issuer), ModalityPerformedProcedureStep, generate_uid()
            )
            statuses.append(int(status.get("Status", -1)))
        assoc.release()
    print(json.dumps(statuses))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5], sys.argv[6])
