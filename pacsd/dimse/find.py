"""C-FIND SCP (Patient Root and Study Root): stream matches from the index."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from pynetdicom import evt

from pacsd import log
from pacsd.dimse import EventHandler, association, qr, statuses
from pacsd.errors import InvalidQuery
from pacsd.index import search
from pacsd.index.db import reading

_log = log.get("pacsd.find")


def handle_find(event: evt.Event, ae_title: str) -> Iterator[tuple[Any, Any]]:
    start = time.perf_counter()
    model = qr.FIND[event.request.AffectedSOPClassUID]
    where = association.fields(event.assoc)
    matches = 0
    try:
        query = qr.identifier(event)
        with reading():
            for response in search.find(query, model, ae_title):
                qr.drain(event.assoc)
                if event.is_cancelled:
                    _log.info("find_cancelled", matches=matches, **where)
                    yield statuses.CANCELLED, None
                    return
                matches += 1
                yield statuses.PENDING, response
    except InvalidQuery as exc:
        _log.warning("find_refused", reason=str(exc), model=model.value, **where)
        yield statuses.status(statuses.IDENTIFIER_INVALID, str(exc)), None
        return
    except Exception as exc:
        _log.exception("find_failed", **where)
        yield statuses.status(statuses.UNABLE_TO_PROCESS, f"internal error: {type(exc).__name__}"), None
        return
    _log.info(
        "find",
        model=model.value,
        qr_level=str(query.get("QueryRetrieveLevel", "")),
        matches=matches,
        ms=log.ms_since(start),
        **where,
    )
    yield statuses.SUCCESS, None


def handlers(ae_title: str) -> list[EventHandler]:
    return [(evt.EVT_C_FIND, handle_find, [ae_title])]
