"""File layout and durable writes.

Layout under ``data_dir``::

    index.sqlite                      the index (WAL mode)
    files/<study>/<series>/<sop>.dcm  stored objects, Part 10
    tmp/                              objects being written (cleared at start)
    tmp/spare/                        empty files made ahead of need (pacsd.storage.spares)

Paths are built only from UIDs that passed :func:`pacsd.domain.uid.require`, so
no attribute text can steer a write outside ``data_dir``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from pacsd.domain import uid
from pacsd.domain.errors import StartupError
from pacsd.storage.spares import Spares, unlink

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)  # Linux


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_file(fd: int, path: str) -> None:
    """Copy the file at *path* to the end of *fd* inside the kernel."""
    source = os.open(path, os.O_RDONLY)
    try:
        left = os.fstat(source).st_size
        while left:
            copied = os.copy_file_range(source, fd, min(left, 1 << 30))
            if copied == 0:
                raise OSError(f"{path} shrank while it was copied")
            left -= copied
    finally:
        os.close(source)


def _make_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # exists, and is not a directory (or a link to one)
        raise StartupError(path, "exists and is not a directory") from None
    except NotADirectoryError:
        raise StartupError(path, "a parent of it is not a directory") from None
    except OSError as exc:
        raise StartupError(path, f"cannot create directory: {exc.strerror or exc}") from None


def _check_writable(directory: Path) -> None:
    """Create and remove a file: os.access says yes to root on any directory
    it may not actually write (immutable, read-only mount, full quota)."""
    probe = directory / f".pacsd-probe-{uuid.uuid4().hex}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise StartupError(directory, f"directory is not writable: {exc.strerror or exc}") from None


class Storage:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.files = data_dir / "files"
        self.tmp = data_dir / "tmp"
        # The store path joins strings: pathlib was a tenth of its CPU.
        self._files = str(self.files)
        self._tmp = str(self.tmp)
        self.spares = Spares(self._tmp)  # started by a serving process only

    def make_layout(self) -> None:
        """Create the directories, or raise :class:`StartupError` naming the
        one that is not a directory, cannot be made, or cannot be written."""
        for path in (self.root, self.files, self.tmp, self.tmp / "spare"):
            _make_directory(path)
            _check_writable(path)

    def clear_temporaries(self) -> int:
        """Remove temporaries left by a crash; only before anything serves.

        Returns how many stale temporary files were removed.
        """
        stale = 0
        for entry in [*self.tmp.iterdir(), *(self.tmp / "spare").glob("*")]:
            if entry.is_file():
                entry.unlink()
                stale += 1
        return stale

    def relative_path(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """The path of an object relative to ``files/``, from validated UIDs."""
        for value in (study_uid, series_uid, sop_uid):
            uid.require(value, "UID used in a path")
        return f"{study_uid}/{series_uid}/{sop_uid}.dcm"

    def absolute(self, relative: str) -> Path:
        return self.files / relative

    def write_temp(
        self, chunks: Iterable[bytes], directory: Path | None = None, *, sync: bool = True, tail: str | None = None
    ) -> str:
        """Write *chunks*, then the content of the file *tail* if given (a
        spooled dataset, copied by the kernel, never through memory), to a
        new temporary file (in tmp/ unless another *directory* is given) and
        fsync it, unless *sync* is false (the caller then keeps the bytes
        durable elsewhere until :meth:`sync`). Returns its path."""
        fd, path = self._spare() if directory is None else (-1, "")
        if fd < 0:
            path = os.path.join(self._tmp if directory is None else directory, f"{uuid.uuid4().hex}.part")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if tail is not None:
                _append_file(fd, tail)
            if sync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.remove(path)
            raise
        os.close(fd)
        return path

    def _spare(self) -> tuple[int, str]:
        """An open spare file and its path, or (-1, "") if none is ready."""
        path = self.spares.take()
        if path is not None:
            try:
                return os.open(path, os.O_WRONLY), path
            except FileNotFoundError:
                pass
        return -1, ""

    def place(self, temp: str | Path, relative: str) -> list[str]:
        """Rename *temp* into place. Returns the directories whose entries
        changed: only once the caller has fsynced them (:func:`fsync_dir`)
        does the file survive a crash under its final name. Callers batch
        them: many objects of one series share one directory fsync."""
        final = os.path.join(self._files, relative)
        try:
            os.replace(temp, final)  # the common case: the series directory exists
            return [os.path.dirname(final)]
        except FileNotFoundError:
            if not os.path.exists(temp):
                raise
        parent = Path(final).parent
        created = self._make_dirs(parent)
        os.replace(temp, final)
        return [str(parent), *map(str, created)]

    def sync(self) -> None:
        """Make everything written to this filesystem durable: file data,
        renames and new directories alike, in one flush (syncfs), where
        fsyncing each file and directory costs a journal commit apiece."""
        if _syncfs is None:
            os.sync()
            return
        fd = os.open(self.files, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
        finally:
            os.close(fd)

    def _make_dirs(self, directory: Path) -> list[Path]:
        """mkdir -p, returning the parents whose entries changed."""
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
        return [p.parent for p in missing]

    def sync_directory(self, path: str | Path) -> None:
        fsync_dir(path)

    def remove(self, path: str | Path) -> None:
        unlink(path)

    def prune(self, relative: str) -> list[str]:
        """Remove the series and study directories of *relative* if empty
        (a delete removed their last file); the directories whose entries
        changed: the file's own if it stays, else the parent of the
        highest one removed."""
        directory = os.path.dirname(os.path.join(self._files, relative))
        while directory != self._files and directory.startswith(self._files + os.sep):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass  # removed already, by the delete of a sibling
            except OSError:
                break  # not empty (ENOTEMPTY), or not ours to remove
            directory = os.path.dirname(directory)
        return [directory] if os.path.isdir(directory) else []
