"""Worklist items for tests and ``scripts/bench``, from DCMTK's own example
worklists: the ``.dump`` files the ``dcmtk`` package ships, turned into
Part 10 ``.wl`` files by DCMTK's ``dump2dcm`` (the format ``wlmscpfs`` and
Orthanc serve), and clones of them for volume.

Test tooling: it imports nothing from pacsd outside ``pacsd.testing``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from pacsd.testing import peers, synth

EXAMPLES = Path("/usr/share/doc/dcmtk/examples/wlistdb/OFFIS")


def example_dumps() -> list[Path]:
    """DCMTK's example worklist dumps, wklist1 to wklist10 in number order."""
    dumps = sorted(EXAMPLES.glob("wklist*.dump"), key=lambda p: int(p.stem.removeprefix("wklist")))
    if not dumps:
        raise FileNotFoundError(f"no wklist*.dump in {EXAMPLES}: install the dcmtk package")
    return dumps


def dump2dcm(dump: Path, out: Path) -> Path:
    """*dump* written as a Part 10 file *out* (explicit VR little endian) by DCMTK."""
    result = subprocess.run(
        [peers.dcmtk("dump2dcm"), "+te", str(dump), str(out)], capture_output=True, text=True, timeout=60
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"dump2dcm {dump} failed: {result.stderr}")
    return out


def examples(dest: Path) -> dict[str, Path]:
    """Every example as ``dest/wklistN.wl``, by name (``wklist1``...)."""
    dest.mkdir(parents=True, exist_ok=True)
    return {dump.stem: dump2dcm(dump, dest / f"{dump.stem}.wl") for dump in example_dumps()}


def sps(item: Dataset) -> Dataset:
    """The (first) Scheduled Procedure Step of *item*."""
    return item.ScheduledProcedureStepSequence[0]  # type: ignore[no-any-return]


def edit(path: Path, change: Callable[[Dataset], None]) -> Path:
    """Rewrite the Part 10 file *path* after *change* has edited its dataset."""
    item = pydicom.dcmread(path)
    change(item)
    item.save_as(path, enforce_file_format=True)
    return path


MODALITIES = ("CT", "MR", "US", "CR", "NM")


def station(n: int) -> str:
    return f"STATION{n:02d}"


def station_modality(n: int) -> str:
    """Each station is one modality: its typical query names both."""
    return MODALITIES[n % len(MODALITIES)]


def clones(dest: Path, count: int, dates: list[str], stations: int = 20, modality: str | None = None) -> list[Path]:
    """*count* items cloned from the examples into ``dest`` as ``.wl``
    files, each with its own study, accession, procedure and patient (none
    the examples' own), spread evenly over *stations* station AE titles (of
    :func:`station_modality`, unless *modality* is given) and over *dates*."""
    dest.mkdir(parents=True, exist_ok=True)
    templates = [pydicom.dcmread(p) for p in examples(dest.with_name(dest.name + "-templates")).values()]
    paths = []
    for n in range(count):
        item = templates[n % len(templates)]
        step = sps(item)
        where = n % stations
        item.StudyInstanceUID = synth.new_uid()
        item.AccessionNumber = f"A{n:07d}"
        item.PatientID = f"WL{n // 3:06d}"  # a few patients with several items
        item.PatientName = f"PATIENT^WL{n // 3:06d}"
        item.RequestedProcedureID = f"RP{n:07d}"
        step.ScheduledProcedureStepID = f"SPS{n:07d}"
        step.ScheduledStationAETitle = station(where)
        step.Modality = modality or station_modality(where)
        step.ScheduledPerformingPhysicianName = f"PHYSICIAN^{where:02d}"
        step.ScheduledProcedureStepStartDate = dates[(n // stations) % len(dates)]
        step.ScheduledProcedureStepStartTime = f"{7 + n % 12:02d}{n % 60:02d}00"
        item.file_meta.MediaStorageSOPInstanceUID = UID(synth.new_uid())
        path = dest / f"item{n:05d}.wl"
        item.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
