"""C-FIND SCP (Patient Root and Study Root Query/Retrieve)."""

from __future__ import annotations

from pacsd.dimse import cfind, qr
from pacsd.services.archive import Archive
from pacsd.wire.acceptor import Association
from pacsd.wire.link import Link, Message


def serve_find(archive: Archive, link: Link, message: Message, association: Association) -> None:
    log_fields = association.log_fields()
    cfind.serve(
        link,
        message,
        association,
        qr.FIND,
        archive.limits,
        lambda identifier, model, watch: archive.find(identifier, model, watch, log_fields),
        event="find",
    )
