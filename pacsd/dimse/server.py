"""The DIMSE server of one process: what it accepts, and which adapter
serves each command, bound to the process's Archive."""

from __future__ import annotations

from functools import partial

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

from pacsd.config import Settings
from pacsd.dimse import echo, find, get, mpps, qr, store, worklist
from pacsd.dimse.move import Mover
from pacsd.services.archive import Archive
from pacsd.wire import command
from pacsd.wire.acceptor import Acceptor, Association, Service
from pacsd.wire.link import Link, Message

QR_SYNTAXES: list[str | UID] = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]


def supported_contexts() -> list[PresentationContext]:
    """What pacsd accepts: Verification, Query/Retrieve, Modality Worklist, and every storage
    SOP class in every transfer syntax (objects are stored as received),
    in both roles (a C-GET requester takes the SCP role for storage)."""
    contexts = [build_context(Verification, QR_SYNTAXES)]
    contexts += [build_context(sop_class, QR_SYNTAXES) for sop_class in [*qr.SOP_CLASSES, *worklist.SOP_CLASSES]]
    contexts.append(build_context(mpps.MPPS_SOP_CLASS, QR_SYNTAXES))
    for storage in AllStoragePresentationContexts:
        assert storage.abstract_syntax is not None
        context = build_context(storage.abstract_syntax, list(AllTransferSyntaxes))
        context.scu_role = context.scp_role = True
        contexts.append(context)
    return contexts


def build_acceptor(settings: Settings, archive: Archive) -> Acceptor:
    """The DIMSE services of one serving process, bound to its archive."""
    server = settings.server
    mover = Mover(archive, settings.remotes, server.network_timeout)
    services: dict[int, Service] = {
        command.C_ECHO_RQ: echo.serve_echo,
        command.C_STORE_RQ: partial(store.serve_store, archive),
        command.C_FIND_RQ: partial(serve_find, archive),
        command.C_MOVE_RQ: mover.serve,
        command.C_GET_RQ: partial(get.serve_get, archive),
        command.N_CREATE_RQ: partial(mpps.serve_n_create, archive),
        command.N_SET_RQ: partial(mpps.serve_n_set, archive),
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


def serve_find(archive: Archive, link: Link, message: Message, association: Association) -> None:
    """A C-FIND goes to the adapter of its context's information model: a
    worklist query, or a Q/R one (which also refuses any other context)."""
    if str(message.context.abstract_syntax) in worklist.FIND:
        worklist.serve_find(archive, link, message, association)
    else:
        find.serve_find(archive, link, message, association)
