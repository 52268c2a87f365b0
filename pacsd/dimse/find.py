"""C-FIND SCP (Patient Root and Study Root): stream matches from the index."""

from __future__ import annotations

import time

from pacsd import log
from pacsd.dimse import qr, statuses
from pacsd.errors import InvalidQuery
from pacsd.index import search
from pacsd.index.db import reading
from pacsd.wire import command
from pacsd.wire.acceptor import Session
from pacsd.wire.link import LINK_ENDED, Link, Message

_log = log.get("pacsd.find")


def serve_find(link: Link, message: Message, session: Session, ae_title: str) -> None:
    start = time.perf_counter()
    model = qr.model(message, qr.FIND)
    where = session.fields()
    matches = 0

    def answer(status: int, comment: str = "") -> None:
        qr.respond(link, message, command.C_FIND_RSP, status, comment)

    try:
        query = qr.identifier(message)
        with reading():
            for response in search.find(query, model, ae_title):
                if qr.cancelled(link, message.command):
                    _log.info("find_cancelled", matches=matches, **where)
                    answer(statuses.CANCELLED)
                    return
                matches += 1
                qr.respond(link, message, command.C_FIND_RSP, statuses.PENDING, identifier=response)
    except InvalidQuery as exc:
        _log.warning("find_refused", reason=str(exc), model=model.value, **where)
        answer(statuses.IDENTIFIER_INVALID, str(exc))
        return
    except LINK_ENDED:
        raise
    except Exception as exc:
        _log.exception("find_failed", **where)
        answer(statuses.UNABLE_TO_PROCESS, f"internal error: {type(exc).__name__}")
        return
    _log.info(
        "find",
        model=model.value,
        qr_level=str(query.get("QueryRetrieveLevel", "")),
        matches=matches,
        ms=log.ms_since(start),
        **where,
    )
    answer(statuses.SUCCESS)
