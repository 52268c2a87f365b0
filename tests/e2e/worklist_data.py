"""The worklist the MWL tests query: DCMTK's ten example items (dump2dcm
at test time), with what they lack for some matching keys added, one item
with a Latin-1 name, and a bulk of clones on one station so that a
C-CANCEL lands while responses are pending.

What each example holds (wklistN; patient, station AE titles, modality,
start date and time, performing physician):

    1  VIVALDI^ANTONIO AV35674         AA32\\AA33          MR 19951015 085607 JOHNSON
    2  VIVALDI^ANTONIO AV35674         AB45               CT 19960406 160700 ROSS
    3  VIVALDI^ANTONIO AV35674         CC56\\NN77          CR 19960123 135558 CONARD
    4  HAYDN^FRANZ^JOSEPH HF           AA32               US 19960103 165709 MEYER
    5  HAYDN^FRANZ^JOSEPH HF           AB45\\DD56          CR 19951206 094500 COOPER
    6  HAYDN^FRANZ^JOSEPH HF           FG56\\ER67\\JJ56\\TZ77 CT 19930606 153600 ROSS
    7  BEETHOVEN^LUDWIG^VAN BLV734623  AZ01               NM 19960502 140956 JOHNSON
    8  BEETHOVEN^LUDWIG^VAN BLV734623  DS45\\NN77\\GH67     CT 19960423 110856 ROSS
    9  MOZART^WOLFGANG^AMADEUS MWA484763 AA67             CT 19931204 075644 JOHNSON
    10 MOZART^WOLFGANG^AMADEUS MWA484763 TT67             MR 19960805 175609 BROWN
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from pacsd.testing import synth, worklists

# Beethoven's items carry an Issuer of Patient ID (the examples have none).
ISSUER = "HOSP_B"
LATIN1_NAME = "MÜLLER^JÜRGEN"
LATIN1_ID = "CS0001"
BULK = 400
BULK_STATION = worklists.station(0)  # every clone's station
BULK_DATE = "20010101"
BULK_MODALITY = "OT"  # no example's


@dataclass
class Worklist:
    files: list[Path]  # every item, to add
    items: dict[str, Dataset]  # wklist1..wklist10 and "latin1", as created


def build(dest: Path) -> Worklist:
    """The worklist's files in *dest*."""
    examples = worklists.examples(dest / "examples")
    for name in ("wklist7", "wklist8"):
        worklists.edit(examples[name], _with_issuer)
    latin1 = dest / "latin1.wl"
    latin1.write_bytes(examples["wklist3"].read_bytes())
    worklists.edit(latin1, _latin1)
    bulk = worklists.clones(dest / "bulk", BULK, [BULK_DATE], stations=1, modality=BULK_MODALITY)
    items = {name: pydicom.dcmread(path) for name, path in examples.items()}
    items["latin1"] = pydicom.dcmread(latin1)
    return Worklist([*examples.values(), latin1, *bulk], items)


def _with_issuer(item: Dataset) -> None:
    item.IssuerOfPatientID = ISSUER


def _latin1(item: Dataset) -> None:
    item.SpecificCharacterSet = "ISO_IR 100"
    item.PatientName = LATIN1_NAME
    item.PatientID = LATIN1_ID
    item.StudyInstanceUID = synth.new_uid()
    item.AccessionNumber = "LATIN1"
    item.RequestedProcedureID = "RPLATIN1"
    step = worklists.sps(item)
    step.ScheduledProcedureStepID = "SPSLATIN1"
    step.ScheduledStationAETitle = "LATIN1"
    step.ScheduledProcedureStepStartDate = "20000101"
