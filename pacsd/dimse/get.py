"""C-GET SCP: send matching instances back over the requesting association."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pynetdicom import evt

from pacsd import log, retrieve
from pacsd.dimse import EventHandler, association, qr, statuses
from pacsd.dimse.qr import Sender
from pacsd.errors import InvalidQuery
from pacsd.storage import Storage

_log = log.get("pacsd.get")


def handle_get(event: evt.Event, storage: Storage) -> Iterator[Any]:
    model = qr.GET[event.request.AffectedSOPClassUID]
    where = association.fields(event.assoc)
    try:
        stored = retrieve.select(qr.identifier(event), model)
    except InvalidQuery as exc:
        _log.warning("get_refused", reason=str(exc), **where)
        yield 1
        yield statuses.status(statuses.IDENTIFIER_INVALID, str(exc)), None
        return
    yield len(stored)
    _log.info("get_started", model=model.value, instances=len(stored), **where)
    # The C-STOREs go back over the requesting association, on the storage
    # contexts where the peer took the SCP role.
    sender = Sender(storage, stored, None, where)
    uninstall = sender.install(event.assoc)
    try:
        yield from sender.sub_operations(event, stored)
    finally:
        uninstall()


def handlers(storage: Storage) -> list[EventHandler]:
    return [(evt.EVT_C_GET, handle_get, [storage])]
