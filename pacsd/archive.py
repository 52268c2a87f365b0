"""The archive: the one object that wires storage, index and services.

Built once per process (the bootstrap); DIMSE handlers receive the pieces
they need from it and never open anything themselves.
"""

from __future__ import annotations

from pacsd import log
from pacsd.config import Settings
from pacsd.index.db import close_index, open_index
from pacsd.index.writer import IndexWriter
from pacsd.services.ingest import Ingest
from pacsd.storage.files import Storage
from pacsd.storage.syncer import Syncer, replay
from pacsd.upstream.fetch import Proxy
from pacsd.upstream.staging import Staging


def check_data_dir(settings: Settings) -> None:
    """Raise :class:`pacsd.domain.errors.StartupError` (one line: the path and the
    problem) unless the data dir's layout exists or can be made, and each of
    its directories can be written."""
    Storage(settings.server.data_dir).make_layout()


def prepare(settings: Settings) -> int:
    """Once per start, before anything serves: create the layout, clear the
    temporaries and staged fetches a crash left, create or upgrade the
    index, rewrite the files a crash may have lost before their flush.
    Returns how many stale temporaries and fetches were removed."""
    storage = Storage(settings.server.data_dir)
    storage.make_layout()
    stale = storage.clear_temporaries() + Staging(storage, settings.limits).clear()
    db = open_index(storage.root / "index.sqlite")
    try:
        replayed = replay(storage)
    finally:
        close_index(db)
    if replayed:
        log.get().info("write_ahead_replayed", files=replayed)
    return stale


class Archive:
    """What one serving process holds. :func:`prepare` must have run: a
    worker must not clear temporaries another worker is writing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = Storage(settings.server.data_dir)
        self.storage.make_layout()
        self.db = open_index(self.storage.root / "index.sqlite")
        self.writer = IndexWriter(self.db.connect_writer)
        self.syncer = Syncer(self.storage, self.writer)
        self.ingest = Ingest(self.storage, self.writer, self.syncer, settings.limits)
        self.staging = Staging(self.storage, settings.limits)
        # The caching proxy, when [virtual] names upstreams.
        self.proxy = Proxy(settings, self.ingest, self.staging) if settings.virtual else None

    def start(self) -> None:
        self.storage.spares.start()
        self.writer.start()
        self.syncer.start()

    def close(self) -> None:
        self.syncer.stop()  # its last batch needs the writer
        self.writer.stop()
        self.storage.spares.stop()
        close_index(self.db)
