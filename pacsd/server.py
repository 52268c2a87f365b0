"""The server: presentation contexts, DIMSE services, listening, worker processes."""

from __future__ import annotations

import fcntl
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import IO

from pydicom.uid import (
    UID,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AllStoragePresentationContexts
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacsd import log
from pacsd.archive import Archive, prepare
from pacsd.config import Settings
from pacsd.dimse import echo, find, get, move, qr, store
from pacsd.wire import command
from pacsd.wire.acceptor import Acceptor, Service
from pacsd.wire.listener import Listener
from pacsd.workers import supervise

QR_SYNTAXES: list[str | UID] = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]

STARTUP_GRACE = 3.0  # seconds to wait for a crashed server's port and lock


class ListenError(Exception):
    """The server cannot start: its port or its data dir is taken."""

    @classmethod
    def on(cls, settings: Settings, exc: OSError) -> ListenError:
        server = settings.server
        return cls(f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}")


def supported_contexts() -> list[PresentationContext]:
    """What pacsd accepts: Verification, Query/Retrieve, and every storage
    SOP class in every transfer syntax (objects are stored as received),
    in both roles (a C-GET requester takes the SCP role for storage)."""
    contexts = [build_context(Verification, QR_SYNTAXES)]
    contexts += [build_context(sop_class, QR_SYNTAXES) for sop_class in qr.SOP_CLASSES]
    for storage in AllStoragePresentationContexts:
        assert storage.abstract_syntax is not None
        context = build_context(storage.abstract_syntax, list(AllTransferSyntaxes))
        context.scu_role = context.scp_role = True
        contexts.append(context)
    return contexts


def build_acceptor(settings: Settings, archive: Archive) -> Acceptor:
    """The DIMSE services of one serving process, bound to its archive."""
    server = settings.server
    services: dict[int, Service] = {
        command.C_ECHO_RQ: echo.serve_echo,
        command.C_STORE_RQ: lambda link, message, session: store.serve_store(
            link, message, session, archive.ingest, archive.proxy
        ),
        command.C_FIND_RQ: lambda link, message, session: find.serve_find(
            link, message, session, server.ae_title, archive.proxy, settings.limits
        ),
        command.C_MOVE_RQ: lambda link, message, session: move.serve_move(
            link,
            message,
            session,
            archive.storage,
            settings.remotes,
            server.ae_title,
            server.network_timeout,
            archive.proxy,
            settings.limits,
        ),
        command.C_GET_RQ: lambda link, message, session: get.serve_get(
            link, message, session, archive.storage, archive.proxy, settings.limits
        ),
    }
    return Acceptor(
        contexts=supported_contexts(),
        services=services,
        allowed_calling_aes=server.allowed_calling_aes,
        max_associations=server.max_associations,
        network_timeout=server.network_timeout,
        ae_title=server.ae_title,
        check_called_ae=server.check_called_ae,
        limits=settings.limits,
        spool_dir=str(archive.storage.tmp),
    )


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


def run_worker(settings: Settings, shared: bool) -> None:
    """One serving process: its own acceptor, index writer and connections."""
    logger = log.get()
    archive = Archive(settings)
    archive.start()
    try:
        server = listen(settings, build_acceptor(settings, archive), shared)
    except ListenError:
        archive.close()
        raise
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logger.info("worker_started")
    stop.wait()
    server.stop()
    archive.close()
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
