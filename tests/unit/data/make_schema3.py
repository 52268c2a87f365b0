"""How tests/unit/data/schema3.sqlite was made (kept as a record, not run by tests).

Run once, with the code of main at 7bb8735 (schema version 3, before the
numbered migrations), from the repository root:

    PYTHONPATH=. .venv/bin/python tests/unit/data/make_schema3.py tests/unit/data/schema3.sqlite

It stores, through the ordinary ingest path of that code:

- patient P-ISS, issuer "HOSP A": study 2.25.100 (series 2.25.110 with
  instances 2.25.111, 2.25.112) and study 2.25.200 (series 2.25.210 with
  instance 2.25.211);
- patient P-PLAIN, no issuer: study 2.25.300, series 2.25.310, instance 2.25.311;
- an object without PatientID: study 2.25.400, series 2.25.410, instance 2.25.411;

then drops every write-ahead copy but that of 2.25.311, records one failed
fetch, and closes the index (no WAL file left). Pixel data is 16 bytes, so
the file is small: 110 KB on disk (one 4 KB page per table and index, in
WAL mode as that code leaves it), about 5 KB compressed in git.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import FetchRecord
from pacsd.domain.received import received_from_file
from pacsd.index.sqlite import SqliteIndex
from pacsd.services.ingest import Ingest
from pacsd.storage.files import Storage
from pacsd.testing import synth

OBJECTS = [
    # patient_id, issuer, study, series, sop
    ("P-ISS", "HOSP A", "2.25.100", "2.25.110", "2.25.111"),
    ("P-ISS", "HOSP A", "2.25.100", "2.25.110", "2.25.112"),
    ("P-ISS", "HOSP A", "2.25.200", "2.25.210", "2.25.211"),
    ("P-PLAIN", None, "2.25.300", "2.25.310", "2.25.311"),
    (None, None, "2.25.400", "2.25.410", "2.25.411"),
]


class Ids:
    def __init__(self) -> None:
        self.ids: list[int] = []

    def written(self, instance_id: int) -> None:
        self.ids.append(instance_id)


def main(target: Path) -> None:
    work = Path(tempfile.mkdtemp())
    try:
        storage = Storage(work / "data")
        storage.make_layout()
        index = SqliteIndex(work / "data" / "index.sqlite")
        index.start()
        flusher = Ids()
        ingest = Ingest(storage, index, flusher, Limits())
        for n, (pid, issuer, study, series, sop) in enumerate(OBJECTS):
            ds = synth.ct(
                patient_id=pid, issuer=issuer, study_uid=study, series_uid=series, sop_uid=sop, pixel_bytes=16
            )
            ingest.store(received_from_file(synth.write(ds, work / f"{n}.dcm")))
        drop = flusher.ids[:3] + flusher.ids[4:]
        index.write(lambda tx: tx.drop_copies(drop), lambda _: None)
        fetch = FetchRecord("2.25.999", "UPSTREAM", False, 3, 1, 0.5, "association rejected")
        index.write(lambda tx: tx.record_fetch(fetch), lambda _: None)
        index.close()
        shutil.copyfile(work / "data" / "index.sqlite", target)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
