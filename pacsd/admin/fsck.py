"""`pacsd fsck`: index rows without files, and files without index rows.

A crash between the rename of a file and the commit of its rows leaves an
unindexed file. A small object's file may also be missing or torn after a
power loss while its bytes wait in the index (its write-ahead copy): the
server rewrites those at start-up, and fsck names them restorable. fsck
reports every kind and, with ``--reindex``, runs unindexed files through
the normal ingest path. A file a delete listed for removal (its rows are
gone; a crash came before its unlink, which start-up finishes) is pending
removal, never unindexed: reindexing it would bring a deleted object back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pacsd.domain.errors import Refusal
from pacsd.domain.received import received_from_file
from pacsd.services.archive import Archive


@dataclass
class Report:
    missing_files: list[str] = field(default_factory=list)  # rows pointing nowhere
    restorable: list[str] = field(default_factory=list)  # files with a write-ahead copy in the index
    unindexed_files: list[str] = field(default_factory=list)
    pending_removal: list[str] = field(default_factory=list)  # deleted; the server removes them at start-up
    reindexed: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        unindexed = set(self.unindexed_files) - set(self.reindexed)
        return not (self.missing_files or self.restorable or self.pending_removal or unindexed)


def check(archive: Archive) -> Report:
    storage = archive.storage
    report = Report()
    indexed = set()
    copies = {path: data for _, path, data in archive.index.copies()}
    for path in archive.index.instance_paths():
        indexed.add(path)
        file = storage.absolute(path)
        if path in copies:
            if not (file.is_file() and file.read_bytes() == copies[path]):
                report.restorable.append(path)
        elif not file.is_file():
            report.missing_files.append(path)
    listed = set(archive.index.removals())
    for file in sorted(storage.files.rglob("*.dcm")):
        relative = file.relative_to(storage.files).as_posix()
        if relative in listed and relative not in indexed:
            report.pending_removal.append(relative)
        elif relative not in indexed:
            report.unindexed_files.append(relative)
    return report


def reindex(archive: Archive, report: Report) -> None:
    for relative in report.unindexed_files:
        path = archive.storage.absolute(relative)
        try:
            archive.store(received_from_file(path))
        except (Refusal, OSError, ValueError) as exc:
            report.refused.append((relative, str(exc)))
        else:
            report.reindexed.append(relative)
