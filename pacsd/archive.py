"""The archive: the one object that wires storage, index and services.

Built once per process (the bootstrap); DIMSE handlers receive the pieces
they need from it and never open anything themselves.
"""

from __future__ import annotations

from pacsd import log
from pacsd.config import Settings
from pacsd.index.db import open_index
from pacsd.index.writer import IndexWriter
from pacsd.ingest import Ingest
from pacsd.storage import Storage


class Archive:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = Storage(settings.server.data_dir)
        stale = self.storage.prepare()
        if stale:
            log.get().info("stale_temporaries_removed", count=stale)
        self.db = open_index(self.storage.root / "index.sqlite")
        self.writer = IndexWriter(self.db)
        self.ingest = Ingest(self.storage, self.writer)

    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        self.writer.stop()
        self.db.close()
