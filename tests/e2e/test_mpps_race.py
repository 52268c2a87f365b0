"""MPPS N-CREATE is a way to create a patient (an unscheduled exam): 100 at
once for one new patient, racing HTTP worklist creates and C-STOREs for
the same key, against two worker processes -> one patient row, and every
step, item and study on it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from pydicom.dataset import Dataset

from pacsd.testing import synth
from tests.e2e.conftest import REPO, SCU, Server

PATIENT_ID, ISSUER = "MPPS-RACE-1", "RACE HOSP"
STEPS, ITEMS, IMAGES = 100, 20, 10
ASSOCIATIONS = 10  # modalities (processes), STEPS / ASSOCIATIONS N-CREATEs each


def item(n: int) -> dict[str, Any]:
    ds = Dataset()
    ds.PatientID = PATIENT_ID
    ds.IssuerOfPatientID = ISSUER
    ds.AccessionNumber = f"MR{n:04d}"
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledProcedureStepStartDate = "20261201"
    ds.ScheduledProcedureStepSequence = [step]
    return ds.to_json_dict()  # type: ignore[no-any-return]


def test_mpps_creates_race_items_and_images_to_one_patient(racing: tuple[Server, int], tmp_path: Path) -> None:
    server, http_port = racing
    go = tmp_path / "go"
    senders = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.mpps_sender", str(server.port), server.ae_title,
             str(STEPS // ASSOCIATIONS), str(go), PATIENT_ID, ISSUER],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(ASSOCIATIONS)
    ]  # fmt: skip
    start = threading.Barrier(ITEMS + 2, timeout=120)

    def create(n: int) -> int:
        start.wait()
        url = f"http://127.0.0.1:{http_port}/dicomweb/mwlitems"
        return httpx.post(url, json=item(n), headers={"Content-Type": "application/dicom+json"}).status_code

    def images() -> list[int]:
        datasets = [synth.ct(patient_id=PATIENT_ID, issuer=ISSUER) for _ in range(IMAGES)]
        start.wait()
        return [int(s.Status) for s in SCU(server).store(*datasets)]

    with ThreadPoolExecutor(max_workers=ITEMS + 1) as pool:
        creates = [pool.submit(create, n) for n in range(ITEMS)]
        stored = pool.submit(images)
        time.sleep(1.0)  # the senders have associated by now (they wait for the start file)
        start.wait()
        go.touch()  # everything at once
        assert [f.result() for f in creates] == [201] * ITEMS
        assert stored.result() == [0x0000] * IMAGES
    results = []
    for sender in senders:
        out, _ = sender.communicate(timeout=120)
        results += json.loads(out)
    assert results == [0x0000] * STEPS
    with sqlite3.connect(f"file:{server.data_dir / 'index.sqlite'}?mode=ro", uri=True) as db:
        [(patients,)] = db.execute("SELECT COUNT(*) FROM patient WHERE patient_id = ?", (PATIENT_ID,)).fetchall()
        [(pk,)] = db.execute("SELECT id FROM patient WHERE patient_id = ?", (PATIENT_ID,)).fetchall()
        owners = {
            table: {row[0] for row in db.execute(f"SELECT DISTINCT patient_pk FROM {table}")}
            for table in ("mpps", "worklist_item", "study")
        }
        [(steps_kept,)] = db.execute("SELECT COUNT(*) FROM mpps").fetchall()
    assert patients == 1
    assert owners == {"mpps": {pk}, "worklist_item": {pk}, "study": {pk}}
    assert steps_kept == STEPS
    assert server.stats()["patients"] == 1
