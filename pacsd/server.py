"""Builds the pynetdicom AE, its presentation contexts and handlers."""

from __future__ import annotations

import copy
import fcntl
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from pydicom.uid import (
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, AllStoragePresentationContexts, _config
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from pacsd import log
from pacsd.archive import Archive, prepare
from pacsd.config import Settings
from pacsd.dimse import EventHandler, association, commandset, echo, find, get, move, qr, store
from pacsd.workers import supervise

QR_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]


class _ReadOnlyContexts(list[PresentationContext]):
    """The server's supported contexts, copied cheaply per association.

    pynetdicom deep-copies them for every association it accepts; with
    every storage class times every transfer syntax that took 100-250 ms
    per association (measured with echoscu). Negotiation only reads them
    (``negotiate_as_acceptor`` builds new result contexts), so a shallow
    copy of each context is enough.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        return [copy.copy(cx) for cx in self]


STARTUP_GRACE = 3.0  # seconds to wait for a crashed server's port and lock


class ListenError(Exception):
    """The server cannot start: its port or its data dir is taken."""

    @classmethod
    def on(cls, settings: Settings, exc: OSError) -> ListenError:
        server = settings.server
        return cls(f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}")


def build_ae(settings: Settings) -> AE:
    # Retrieves hand pynetdicom the paths of stored files; send them byte for
    # byte rather than decoding and re-encoding (only path arguments change).
    _config.STORE_SEND_CHUNKED_DATASET = True
    commandset.install()
    # pynetdicom's own per-message debug handlers format every PDU and DIMSE
    # message even when the log level drops them; our handlers log instead.
    _config.LOG_HANDLER_LEVEL = "none"
    ae = AE(ae_title=settings.server.ae_title)
    ae.maximum_associations = settings.server.max_associations
    ae.network_timeout = settings.server.network_timeout
    ae.acse_timeout = 30
    ae.dimse_timeout = settings.server.network_timeout
    # Accept a PDU of any size the peer wants to send: fewer, larger PDUs.
    ae.maximum_pdu_size = 0
    if settings.server.allowed_calling_aes:
        ae.require_calling_aet = list(settings.server.allowed_calling_aes)
    ae.add_supported_context(Verification)
    for sop_class in qr.SOP_CLASSES:
        ae.add_supported_context(sop_class, QR_SYNTAXES)
    # Objects are stored as received, so every transfer syntax is accepted.
    # Both roles: a C-GET requestor takes the SCP role for storage.
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, AllTransferSyntaxes, scu_role=True, scp_role=True)
    return ae


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server, started by us rather than by
    ``AE.start_server`` (which cannot share a port)."""

    def shutdown(self) -> None:
        # pynetdicom's shutdown also unregisters from the AE's list of the
        # servers *it* started; this one is not on it.
        socketserver.BaseServer.shutdown(self)
        self.server_close()


class _ReusePortServer(_Server):
    """A server whose socket shares its port with the other worker
    processes (SO_REUSEPORT: the kernel spreads connections)."""

    def server_bind(self) -> None:
        assert self.socket is not None
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def listen(ae: AE, settings: Settings, handlers: list[EventHandler], shared: bool) -> ThreadedAssociationServer:
    """Bind and serve in a background thread; *shared* for worker processes."""
    address = (settings.server.host, settings.server.port)
    try:
        server = ae.make_server(address, evt_handlers=handlers, server_class=_ReusePortServer if shared else _Server)
    except OSError as exc:
        raise ListenError.on(settings, exc) from None
    server.contexts = _ReadOnlyContexts(server.contexts)
    threading.Thread(target=server.serve_forever, name="acceptor", daemon=True).start()
    return server


def check_port_free(settings: Settings) -> None:
    """Fail like a plain bind would if anything holds the port, before
    workers bind it with SO_REUSEPORT (which another pacsd could share),
    and before anything in the data dir is touched."""
    probe = socket.socket()
    # Like pynetdicom's own bind: connections in TIME_WAIT do not count.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        _retry(lambda: probe.bind((settings.server.host, settings.server.port)))
    except OSError as exc:
        raise ListenError.on(settings, exc) from None
    finally:
        probe.close()


def run_worker(settings: Settings, shared: bool) -> None:
    """One serving process: its own AE, index writer and connections."""
    logger = log.get()
    archive = Archive(settings)
    archive.start()
    ae = build_ae(settings)
    handlers: list[EventHandler] = [
        *association.HANDLERS,
        *echo.HANDLERS,
        *store.handlers(archive.ingest),
        *find.handlers(settings.server.ae_title),
        *move.handlers(archive.storage, settings.remotes),
        *get.handlers(archive.storage),
    ]
    try:
        server = listen(ae, settings, handlers, shared)
    except ListenError:
        archive.close()
        raise
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logger.info("worker_started")
    stop.wait()
    server.shutdown()
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
