"""Synthetic DICOM objects for tests and benchmarks.

CT-like images with chosen identifiers and a pixel payload of a chosen
size, written as Part 10 files in a chosen transfer syntax.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pacsd.domain import uid as pacsd_uid

_counter = itertools.count(1)


def new_uid() -> str:
    """A fresh UUID-derived UID (2.25.<uuid>)."""
    return str(generate_uid(prefix=None))


def ct(
    *,
    patient_id: str | None = "PAT001",
    issuer: str | None = None,
    patient_name: str = "Doe^John",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    pixel_bytes: int = 8192,
    instance_number: int | None = None,
    **extra: object,
) -> Dataset:
    """A CT Image object; None for an identifier leaves the element out."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid or new_uid()
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "ACC1"
    ds.Modality = "CT"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = "Synthetic study"
    ds.SeriesDescription = "Synthetic series"
    ds.PatientName = patient_name
    if patient_id is not None:
        ds.PatientID = patient_id
    if issuer is not None:
        ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or new_uid()
    ds.SeriesInstanceUID = series_uid or new_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number if instance_number is not None else next(_counter)
    side = max(1, int((pixel_bytes // 2) ** 0.5))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = side
    ds.Columns = max(1, pixel_bytes // 2 // side)
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = os.urandom(ds.Rows * ds.Columns * 2)
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    set_meta(ds, ExplicitVRLittleEndian)
    return ds


def series(count: int, **kwargs: Any) -> list[Dataset]:
    """*count* images of one new series (instance numbers 1..count); the
    keyword arguments are those of :func:`ct`, applied to every image."""
    first = ct(instance_number=1, **kwargs)
    same = {**kwargs, "study_uid": first.StudyInstanceUID, "series_uid": first.SeriesInstanceUID}
    return [first, *(ct(instance_number=i, **same) for i in range(2, count + 1))]


def set_meta(ds: Dataset, transfer_syntax: str) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta.ImplementationClassUID = UID(pacsd_uid.IMPLEMENTATION_CLASS_UID)


def write(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write *ds* as a Part 10 file in *transfer_syntax* (uncompressed ones)."""
    set_meta(ds, transfer_syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def generate(
    out: Path, studies: int, series: int, instances: int, pixel_bytes: int, patients: int, patient_prefix: str = "GEN"
) -> int:
    """Write studies x series x instances CT files under *out*; returns the count.

    Studies are spread over *patients* patients, with varied dates and
    modalities so that queries have something to select.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    modalities = ["CT", "MR", "US", "CR", "DX"]
    for s in range(studies):
        p = s % patients
        study_uid = new_uid()
        date = f"20{10 + s % 15:02}{1 + s % 12:02}{1 + s % 28:02}"
        for r in range(series):
            series_uid = new_uid()
            for i in range(instances):
                ds = ct(
                    patient_id=f"{patient_prefix}{p:06}", patient_name=f"Generated^Patient{p:06}", study_uid=study_uid,
                    series_uid=series_uid, instance_number=i + 1, pixel_bytes=pixel_bytes, StudyDate=date,
                    Modality=modalities[(s + r) % len(modalities)], SeriesNumber=r + 1, AccessionNumber=f"A{s:08}",
                )  # fmt: skip
                write(ds, out / f"{s:06}-{r:03}-{i:05}.dcm")
                written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="gen-data", description="Write synthetic CT objects as Part 10 files.")
    p.add_argument("out", type=Path)
    p.add_argument("--studies", type=int, default=10)
    p.add_argument("--series", type=int, default=1, help="series per study")
    p.add_argument("--instances", type=int, default=100, help="instances per series")
    p.add_argument("--pixel-bytes", type=int, default=8192)
    p.add_argument("--patients", type=int, default=0, help="default: one per study")
    args = p.parse_args(argv)
    n = generate(args.out, args.studies, args.series, args.instances, args.pixel_bytes, args.patients or args.studies)
    print(f"{n} files in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
