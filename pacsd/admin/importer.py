"""`pacsd import`: ingest Part 10 files from disk through the normal path.

For migrating a folder of DICOM files, or loading test data: each file is
validated, written and indexed exactly as if a modality had sent it, by
several workers so the index writer can commit them in groups.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pacsd.domain.errors import Refusal
from pacsd.domain.received import received_from_file
from pacsd.services.archive import Archive


def files_under(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def import_files(archive: Archive, paths: Iterable[Path], workers: int) -> tuple[Counter[str], list[tuple[Path, str]]]:
    """Store every file under *paths*; returns result counts and problems."""
    counts: Counter[str] = Counter()
    problems: list[tuple[Path, str]] = []

    def one(path: Path) -> None:
        try:
            outcome = archive.store(received_from_file(path))
        except Refusal as exc:
            counts["refused"] += 1
            problems.append((path, str(exc)))
        except Exception as exc:  # not a Part 10 file, unreadable, ...
            counts["unreadable"] += 1
            problems.append((path, f"{type(exc).__name__}: {exc}"))
        else:
            counts[outcome.result.value] += 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, files_under(paths)):
            pass
    return counts, problems
