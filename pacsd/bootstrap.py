"""Wiring, in one place: settings -> ports -> Archive -> servers.

:func:`serve` runs the server: it locks the data dir, prepares the archive
once (:func:`prepare`), then serves from one or more worker processes,
each with its own :class:`Node` (index connections and writer, syncer,
Archive, DIMSE acceptor).
"""

from __future__ import annotations

import fcntl
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import IO

from pacsd import log
from pacsd.config import Settings
from pacsd.dimse.server import build_acceptor
from pacsd.index.sqlite import SqliteIndex
from pacsd.services import deletion
from pacsd.services.archive import Archive
from pacsd.services.conversions import Conversions
from pacsd.storage.files import Storage
from pacsd.storage.syncer import Syncer, replay
from pacsd.upstream.fetch import Proxy
from pacsd.upstream.staging import Staging
from pacsd.web.app import build_app
from pacsd.web.server import HttpServer, bind
from pacsd.wire.acceptor import Acceptor
from pacsd.wire.listener import Listener
from pacsd.workers import supervise

STARTUP_GRACE = 3.0  # seconds to wait for a crashed server's port and lock


class ListenError(Exception):
    """The server cannot start: its port or its data dir is taken."""

    @classmethod
    def on(cls, settings: Settings, exc: OSError, http: bool = False) -> ListenError:
        if http:
            where = f"{settings.http.host}:{settings.http.port} (HTTP)"
        else:
            where = f"{settings.server.host}:{settings.server.port}"
        return cls(f"cannot listen on {where}: {exc.strerror or exc}")


def check_data_dir(settings: Settings) -> None:
    """Raise :class:`pacsd.domain.errors.StartupError` (one line: the path and the
    problem) unless the data dir's layout exists or can be made, and each of
    its directories can be written."""
    Storage(settings.server.data_dir).make_layout()


def prepare(settings: Settings) -> int:
    """Once per start, before anything serves: create the layout, clear the
    temporaries and staged fetches a crash left, create or upgrade the
    index, rewrite the files a crash may have lost before their flush,
    and remove the files of deletes a crash interrupted. Returns how many stale temporaries and fetches were removed."""
    storage = Storage(settings.server.data_dir)
    storage.make_layout()
    stale = storage.clear_temporaries() + Staging(storage, settings.limits).clear()
    index = SqliteIndex(storage.root / "index.sqlite")
    index.start()
    try:
        replayed = replay(storage, index)
        removed = deletion.finish(index, storage)
    finally:
        index.close()
    if replayed:
        log.get().info("write_ahead_replayed", files=replayed)
    if removed:
        log.get().info("deleted_files_removed", files=removed)
    return stale


class Node:
    """What one serving (or operator) process holds: the ports, wired into
    its Archive. :func:`prepare` must have run: a worker must not clear
    temporaries another worker is writing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = Storage(settings.server.data_dir)
        self.storage.make_layout()
        self.index = SqliteIndex(self.storage.root / "index.sqlite")
        self.syncer = Syncer(self.storage, self.index)
        staging = Staging(self.storage, settings.limits)
        # The caching proxy, when [virtual] names upstreams.
        source = Proxy(settings, self.index, staging) if settings.virtual else None
        self.archive = Archive(
            ae_title=settings.server.ae_title,
            limits=settings.limits,
            index=self.index,
            storage=self.storage,
            flusher=self.syncer,
            source=source,
            worklist_expire_days=settings.worklist.expire_after_days,
            worklist_own_items_only=settings.worklist_own_items_only(),
            conversions=Conversions(settings.transcode.processes),
            allow_lossy=settings.transcode.allow_lossy,
        )

    def start(self) -> None:
        self.storage.spares.start()
        self.index.start()
        self.syncer.start()

    def close(self) -> None:
        self.archive.close()
        self.syncer.stop()  # its last batch needs the index
        self.index.close()
        self.storage.spares.stop()


def listen(settings: Settings, acceptor: Acceptor, shared: bool) -> Listener:
    """Bind and start serving; *shared* for worker processes."""
    try:
        listener = Listener((settings.server.host, settings.server.port), acceptor.serve, shared=shared)
    except OSError as exc:
        raise ListenError.on(settings, exc) from None
    listener.start()
    return listener


def check_port_free(settings: Settings) -> None:
    """Fail like a plain bind would if anything holds the port, before
    workers bind it with SO_REUSEPORT (which another pacsd could share),
    and before anything in the data dir is touched."""
    probe = socket.socket()
    # Like the server's own bind: connections in TIME_WAIT do not count.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        _retry(lambda: probe.bind((settings.server.host, settings.server.port)))
    except OSError as exc:
        raise ListenError.on(settings, exc) from None
    finally:
        probe.close()
    if settings.http.enabled:
        try:
            _retry(lambda: bind(settings.http.host, settings.http.port, shared=False).close())
        except OSError as exc:
            raise ListenError.on(settings, exc, http=True) from None


def listen_http(settings: Settings, archive: Archive, shared: bool) -> HttpServer:
    """Bind the HTTP port and serve the app over *archive* in a thread."""
    try:
        sock = bind(settings.http.host, settings.http.port, shared=shared)
    except OSError as exc:
        raise ListenError.on(settings, exc, http=True) from None
    http = settings.http
    viewer_dir = http.viewer_dir or settings.server.data_dir / "viewer"
    server = HttpServer(build_app(archive, cors_origins=http.cors_origins, viewer_dir=viewer_dir), sock)
    server.start()
    return server


def run_worker(settings: Settings, shared: bool) -> None:
    """One serving process: its own acceptor, index writer and connections."""
    logger = log.get()
    node = Node(settings)
    node.start()
    node.archive.conversions.start()  # serving: its first conversion should not wait for the processes
    http: HttpServer | None = None
    try:
        # HTTP first: once the DICOM port answers, so does the HTTP one.
        if settings.http.enabled:
            http = listen_http(settings, node.archive, shared)
        server = listen(settings, build_acceptor(settings, node.archive), shared)
    except BaseException:
        if http is not None:
            http.stop()
        node.close()
        raise
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logger.info("worker_started", http_port=settings.http.port or None)
    stop.wait()
    server.stop()
    if http is not None:
        http.stop()  # before the index closes: its requests in progress still write
    node.close()
    logger.info("worker_stopped")


def lock_data_dir(settings: Settings) -> IO[bytes]:
    """Hold an exclusive lock on the data dir for the server's lifetime: a
    second server would clear the first one's temporaries at start-up."""
    data_dir = settings.server.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "serve.lock").open("wb")
    try:
        _retry(lambda: fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB))
    except OSError:
        handle.close()
        raise ListenError(f"another pacsd is serving {data_dir}") from None
    return handle  # closed (and unlocked) when the process ends


def _retry(attempt: Callable[[], None], seconds: float = STARTUP_GRACE) -> None:
    """Run *attempt* until it stops raising OSError or *seconds* pass: after
    a crash, the killed workers may hold the port and lock a moment longer."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            attempt()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def serve(settings: Settings) -> None:
    """Run the server until SIGINT/SIGTERM: prepare the archive once, then
    serve from `workers` processes sharing the port."""
    logger = log.get()
    lock = lock_data_dir(settings)
    check_port_free(settings)
    stale = prepare(settings)
    if stale:
        logger.info("stale_temporaries_removed", count=stale)
    workers = settings.server.workers
    logger.info(
        "server_started",
        ae_title=settings.server.ae_title,
        host=settings.server.host,
        port=settings.server.port,
        http_port=settings.http.port or None,
        data_dir=str(settings.server.data_dir),
        config=settings.source,
        workers=workers,
    )
    if workers == 1:
        run_worker(settings, shared=False)
    else:
        # Workers inherit the lock: the data dir stays taken until the last
        # process of this server is gone, even one still dying after a crash.
        supervise(workers, lambda: run_worker(settings, shared=True))
    logger.info("server_stopped")
    lock.close()
