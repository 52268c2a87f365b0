"""A message's dataset as it arrives: in memory while small, then in a file.

A C-STORE of a 4 GB multi-frame is legitimate; holding it in memory is
not. :class:`Spool` collects the fragments of one dataset into one buffer
(no list of PDU bodies: 16 MiB of empty fragments cost nothing) and,
once the dataset passes ``spill_at`` bytes, moves what it has to a file
and writes every further fragment there. It refuses to grow past
``limit`` (:class:`BudgetExceeded` naming *budget*), so a peer's message
never costs more than ``spill_at`` bytes of memory.
"""

from __future__ import annotations

import os
import uuid

from pacsd.domain.limits import BudgetExceeded
from pacsd.domain.received import Spooled


class Spool:
    def __init__(self, directory: str | None, spill_at: int, limit: int, budget: str) -> None:
        """*directory* None: never spill (the dataset is bounded by *limit* alone)."""
        self.directory = directory
        self.spill_at = spill_at
        self.limit = limit
        self.budget = budget
        self.size = 0
        self._buffer = bytearray()
        self._fd = -1
        self._path = ""

    def write(self, data: memoryview | bytes) -> None:
        if self.size + len(data) > self.limit:
            self.discard()
            raise BudgetExceeded(self.budget, f"dataset of more than {self.limit} bytes exceeds {self.budget}")
        self.size += len(data)
        if self._fd >= 0:
            self._write_file(data)
            return
        self._buffer += data
        if self.directory is not None and len(self._buffer) > self.spill_at:
            self._path = os.path.join(self.directory, f"{uuid.uuid4().hex}.spool")
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            self._write_file(self._buffer)
            self._buffer = bytearray()

    def _write_file(self, data: memoryview | bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def finish(self) -> bytes | Spooled:
        """The whole dataset: its bytes, or the file holding them."""
        if self._fd < 0:
            data = bytes(self._buffer)
            self._buffer = bytearray()
            return data
        os.close(self._fd)
        self._fd = -1
        return Spooled(self._path, self.size)

    def discard(self) -> None:
        """Drop what was received (the message is abandoned); idempotent."""
        self._buffer = bytearray()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._path:
            Spooled(self._path, self.size).discard()
            self._path = ""
