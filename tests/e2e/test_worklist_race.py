"""Issue 13's race: 100 concurrent HTTP worklist creates for one new
patient, while C-STOREs for that patient arrive, against two worker
processes (each with its own index writer) -> one patient row, 100 items,
and every study under that patient."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pydicom.dataset import Dataset

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server

PATIENT_ID, ISSUER = "RACE-0001", "RACE HOSP"
CREATES = 100
STUDIES, PER_STUDY = 4, 5


def item(n: int) -> dict[str, Any]:
    """The *n*-th distinct item for the one patient."""
    ds = Dataset()
    ds.PatientName = "Race^Patient"
    ds.PatientID = PATIENT_ID
    ds.IssuerOfPatientID = ISSUER
    ds.AccessionNumber = f"RACE{n:04d}"
    ds.RequestedProcedureDescription = f"procedure {n}"
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = "CT1"
    step.ScheduledProcedureStepStartDate = "20240301"
    step.ScheduledProcedureStepStartTime = f"{8 + n // 60:02d}{n % 60:02d}00"
    ds.ScheduledProcedureStepSequence = [step]
    return ds.to_json_dict()  # type: ignore[no-any-return]


def test_concurrent_creates_and_stores_for_one_new_patient_make_one_patient(racing: tuple[Server, int]) -> None:
    server, http_port = racing
    images = [
        ds
        for _ in range(STUDIES)
        for ds in synth.series(PER_STUDY, patient_id=PATIENT_ID, issuer=ISSUER, study_uid=synth.new_uid())
    ]
    start = threading.Barrier(CREATES + 1, timeout=120)
    store_statuses: list[int] = []

    def store() -> None:
        start.wait()
        store_statuses.extend(int(status.Status) for status in SCU(server).store(*images))

    limits = httpx.Limits(max_connections=CREATES, max_keepalive_connections=CREATES)
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120, limits=limits) as web:

        def create(n: int) -> httpx.Response:
            start.wait()
            return web.post("/dicomweb/mwlitems", json=item(n), headers={"Content-Type": "application/dicom+json"})

        storer = threading.Thread(target=store)
        storer.start()
        with ThreadPoolExecutor(CREATES) as pool:
            responses = list(pool.map(create, range(CREATES)))
        storer.join(300)
        found = web.get("/dicomweb/mwlitems", params={"PatientID": PATIENT_ID, "IssuerOfPatientID": ISSUER})

    assert [r.status_code for r in responses] == [201] * CREATES, [r.text for r in responses if r.status_code != 201]
    assert store_statuses == [0] * (STUDIES * PER_STUDY)
    assert found.status_code == 200
    items = found.json()
    assert len(items) == CREATES
    assert len({entry["0020000D"]["Value"][0] for entry in items}) == CREATES  # 100 distinct items

    stats = server.stats()
    db = sqlite3.connect(f"file:{server.data_dir / 'index.sqlite'}?mode=ro", uri=True)
    try:
        patients = db.execute("SELECT id FROM patient WHERE patient_id = ?", (PATIENT_ID,)).fetchall()
        item_patients = db.execute("SELECT DISTINCT patient_pk FROM worklist_item").fetchall()
        item_count = db.execute("SELECT COUNT(*) FROM worklist_item").fetchone()[0]
        study_patients = db.execute("SELECT DISTINCT patient_pk FROM study").fetchall()
        studies = db.execute("SELECT COUNT(*) FROM study").fetchone()[0]
    finally:
        db.close()
    print(
        f"\nrace: {CREATES} creates -> {len(patients)} patient row(s) for {PATIENT_ID}, {item_count} items; "
        f"{len(images)} C-STOREs -> {studies} studies under {len(study_patients)} patient(s); stats {stats}"
    )
    assert len(patients) == 1
    assert stats["patients"] == 1
    assert item_count == CREATES
    assert item_patients == patients
    assert studies == STUDIES and study_patients == patients
    assert stats["instances"] == STUDIES * PER_STUDY
    # Both workers served creates: two index writers raced, not one.
    creators = {e["pid"] for e in server.events("http_request") if e["method"] == "POST" and e["status"] == 201}
    assert len(creators) == 2, creators
