"""C-GET SCP: send matching instances back over the requesting association."""

from __future__ import annotations

from pacsd import log, retrieve
from pacsd.dimse import qr, statuses
from pacsd.dimse.suboperations import SubOperations, Tally, finish, unfetched
from pacsd.errors import InvalidQuery
from pacsd.storage import Storage
from pacsd.virtual.fetch import Proxy
from pacsd.wire import command
from pacsd.wire.acceptor import Session
from pacsd.wire.link import Link, Message

_log = log.get("pacsd.get")


def serve_get(link: Link, message: Message, session: Session, storage: Storage, proxy: Proxy | None) -> None:
    model = qr.model(message, qr.GET)
    where = session.fields()
    try:
        query = qr.identifier(message)
        stored = retrieve.select(query, model)
    except InvalidQuery as exc:
        _log.warning("get_refused", reason=str(exc), **where)
        qr.respond(link, message, command.C_GET_RSP, statuses.IDENTIFIER_INVALID, str(exc))
        return
    missing = Tally(0)
    if proxy is not None:
        missing = unfetched(proxy.make_local(query, qr.watch(link, message.command), where))
        if missing.remaining:  # cancelled while fetching
            finish(link, message, command.C_GET_RSP, missing)
            return
        stored = retrieve.select(query, model)
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
    tally.unfetched, tally.notes = missing.unfetched, missing.notes
    _log.info(
        "get_done",
        completed=tally.completed,
        failed=tally.failed,
        warning=tally.warning,
        remaining=tally.remaining,
        **where,
    )
    suboperations.finish(tally)
