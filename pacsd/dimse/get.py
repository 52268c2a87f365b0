"""C-GET SCP: send matching instances back over the requesting association."""

from __future__ import annotations

from pacsd import log, retrieve
from pacsd.dimse import qr, statuses
from pacsd.dimse.suboperations import SubOperations
from pacsd.errors import InvalidQuery
from pacsd.storage import Storage
from pacsd.wire import command
from pacsd.wire.acceptor import Session
from pacsd.wire.link import Link, Message

_log = log.get("pacsd.get")


def serve_get(link: Link, message: Message, session: Session, storage: Storage) -> None:
    model = qr.model(message, qr.GET)
    where = session.fields()
    try:
        stored = retrieve.select(qr.identifier(message), model)
    except InvalidQuery as exc:
        _log.warning("get_refused", reason=str(exc), **where)
        qr.respond(link, message, command.C_GET_RSP, statuses.IDENTIFIER_INVALID, str(exc))
        return
    _log.info("get_started", model=model.value, instances=len(stored), **where)
    # The C-STOREs go back over this association, on the storage contexts
    # where the peer took the SCP role.
    usable = {
        (str(cx.abstract_syntax), str(cx.transfer_syntax[0])): context_id
        for context_id, cx in link.contexts.items()
        if cx.as_scu
    }
    suboperations = SubOperations(link, message, command.C_GET_RSP, storage, link, usable, None, where)
    tally = suboperations.run(stored)
    _log.info(
        "get_done",
        completed=tally.completed,
        failed=tally.failed,
        warning=tally.warning,
        remaining=tally.remaining,
        **where,
    )
    suboperations.finish(tally)
