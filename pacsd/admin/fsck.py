"""`pacsd fsck`: index rows without files, and files without index rows.

A crash between the rename of a file and the commit of its rows leaves an
unindexed file (never a row without a file). fsck reports both kinds and,
with ``--reindex``, runs unindexed files through the normal ingest path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom.filereader import read_file_meta_info

from pacsd.errors import Refusal
from pacsd.index.models import Instance
from pacsd.ingest import Ingest, Received, stored_dataset
from pacsd.storage import Storage


@dataclass
class Report:
    missing_files: list[str] = field(default_factory=list)  # rows pointing nowhere
    unindexed_files: list[str] = field(default_factory=list)
    reindexed: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing_files or set(self.unindexed_files) - set(self.reindexed))


def check(storage: Storage) -> Report:
    report = Report()
    indexed = set()
    for (path,) in Instance.select(Instance.path).tuples().iterator():
        indexed.add(path)
        if not storage.absolute(path).is_file():
            report.missing_files.append(path)
    for file in sorted(storage.files.rglob("*.dcm")):
        relative = file.relative_to(storage.files).as_posix()
        if relative not in indexed:
            report.unindexed_files.append(relative)
    return report


def reindex(storage: Storage, ingest: Ingest, report: Report) -> None:
    for relative in report.unindexed_files:
        path = storage.absolute(relative)
        try:
            received = _received(path)
            ingest.store(received)
        except (Refusal, OSError, ValueError) as exc:
            report.refused.append((relative, str(exc)))
        else:
            report.reindexed.append(relative)


def _received(path: Path) -> Received:
    meta = read_file_meta_info(path)
    return Received(
        dataset=stored_dataset(path),
        transfer_syntax=str(meta.TransferSyntaxUID),
        sop_class_uid=str(meta.MediaStorageSOPClassUID),
        sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
        source_ae=str(meta.get("SourceApplicationEntityTitle", "")),
    )
