"""Empty files made ahead of need, for the store path to write into."""

from __future__ import annotations

import collections
import itertools
import os
import threading
import uuid
from pathlib import Path

SPARES = 64  # empty files kept ready in tmp/


class Spares:
    """Empty files in tmp/, created ahead of need by a thread of their own.

    Creating a file (allocating its inode) was the largest single cost on
    the store path: 0.01-0.2 ms of kernel time here, and up to 0.9 ms where
    many files were deleted in the last minutes (ext4 passes over recently
    freed inodes one by one), while opening, writing and renaming an
    existing file take 0.02 ms. It needs no data, so it is done before the
    file is wanted.
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
        # Names: unique per process and start (O_EXCL says if not); cheaper than a uuid4 each.
        prefix = uuid.uuid4().hex[:12]
        self._names = (f"{prefix}-{n}.spare" for n in itertools.count())

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
            unlink(self._ready.popleft())

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
                name = next(self._names)
                made, path = os.path.join(self.directory, name), os.path.join(self.ready, name)
                try:
                    os.close(os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                    os.rename(made, path)
                except OSError:
                    unlink(made)
                    break  # a full disk: the store path creates its own and says so
                self._ready.append(path)
            if self._stopping:
                return


def unlink(path: str | Path) -> None:
    """Remove *path* if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
