"""File layout and durable writes.

Layout under ``data_dir``::

    index.sqlite                      the index (WAL mode)
    files/<study>/<series>/<sop>.dcm  stored objects, Part 10
    tmp/                              objects being written (cleared at start)

Paths are built only from UIDs that passed :func:`pacsd.uid.require`, so
no attribute text can steer a write outside ``data_dir``.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from pacsd import uid

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)  # Linux


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


SPARES = 64  # empty files kept ready in tmp/


class Spares:
    """Empty files in tmp/, created ahead of need by a thread of their own.

    Creating a file (allocating its inode) was the largest single cost on
    the store path: 0.2 ms here, up to 0.9 ms in a directory whose block
    group is crowded, while opening, writing and renaming an existing file
    take 0.02 ms. It needs no data, so it is done before the file is wanted.
    Each is made in tmp/ and then moved to tmp/spare/, where the store path
    takes them: a rename out of a directory waits for its lock, which a slow
    creation holds. Left-overs are temporaries like any other: cleared at
    start-up.
    """

    def __init__(self, directory: str, keep: int = SPARES) -> None:
        self.directory = directory
        self.ready = os.path.join(directory, "spare")
        self.keep = keep
        self._ready: collections.deque[str] = collections.deque()
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="spares", daemon=True)

    def start(self) -> None:
        os.makedirs(self.ready, exist_ok=True)
        self._wanted.set()
        self._thread.start()

    def stop(self) -> None:
        """Stop making spares and remove the unused ones."""
        self._stopping = True
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join()
        while self._ready:
            _unlink(self._ready.popleft())

    def take(self) -> str | None:
        """An empty file's path, or None if none is ready."""
        try:
            path = self._ready.popleft()
        except IndexError:
            path = None
        if len(self._ready) < self.keep // 2:
            self._wanted.set()
        return path

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            while len(self._ready) < self.keep and not self._stopping:
                name = f"{uuid.uuid4().hex}.spare"
                made, path = os.path.join(self.directory, name), os.path.join(self.ready, name)
                try:
                    os.close(os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                    os.rename(made, path)
                except OSError:
                    _unlink(made)
                    break  # a full disk: the store path creates its own and says so
                self._ready.append(path)
            if self._stopping:
                return


def _unlink(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
        for path in (self.root, self.files, self.tmp):
            path.mkdir(parents=True, exist_ok=True)

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

    def write_temp(self, chunks: Iterable[bytes], directory: Path | None = None, *, sync: bool = True) -> str:
        """Write *chunks* to a new temporary file (in tmp/ unless another
        *directory* is given) and fsync it, unless *sync* is false (the
        caller then keeps the bytes durable elsewhere until :meth:`sync`).
        Returns its path."""
        fd, path = self._spare() if directory is None else (-1, "")
        if fd < 0:
            path = os.path.join(self._tmp if directory is None else directory, f"{uuid.uuid4().hex}.part")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
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

    def remove(self, path: str | Path) -> None:
        _unlink(path)
