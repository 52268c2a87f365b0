"""Builds the pynetdicom AE, its presentation contexts and handlers."""

from __future__ import annotations

import copy
import signal
import threading
from typing import Any

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

from pacsd import log
from pacsd.archive import Archive
from pacsd.config import Settings
from pacsd.dimse import EventHandler, association, echo, find, get, move, qr, store

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


class ListenError(Exception):
    """The server socket could not be opened (port in use, bad address)."""


def build_ae(settings: Settings) -> AE:
    # Retrieves hand pynetdicom the paths of stored files; send them byte for
    # byte rather than decoding and re-encoding (only path arguments change).
    _config.STORE_SEND_CHUNKED_DATASET = True
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


def serve(settings: Settings) -> None:
    """Run the server until SIGINT/SIGTERM."""
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
    address = (settings.server.host, settings.server.port)
    try:
        server = ae.start_server(address, block=False, evt_handlers=handlers)
    except OSError as exc:
        archive.close()
        raise ListenError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}") from None
    if server is not None:
        server.contexts = _ReadOnlyContexts(server.contexts)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logger.info(
        "server_started",
        ae_title=settings.server.ae_title,
        host=address[0],
        port=address[1],
        data_dir=str(settings.server.data_dir),
        config=settings.source,
    )
    stop.wait()
    logger.info("server_stopping")
    if server is not None:
        server.shutdown()
    archive.close()
    logger.info("server_stopped")
