"""C-MOVE SCP: send matching instances to a known AE over a sub-association."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pynetdicom import build_context, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacsd import log, retrieve
from pacsd.config import Remote
from pacsd.dimse import EventHandler, association, qr, statuses
from pacsd.dimse.qr import Sender
from pacsd.errors import InvalidQuery
from pacsd.storage import Storage

_log = log.get("pacsd.move")


def handle_move(event: evt.Event, storage: Storage, remotes: dict[str, Remote]) -> Iterator[Any]:
    model = qr.MOVE[event.request.AffectedSOPClassUID]
    where = association.fields(event.assoc)
    destination = (event.move_destination or "").strip()
    remote = next((r for r in remotes.values() if r.ae_title == destination), None)
    if remote is None:
        # Checked before anything is read or sent: pynetdicom answers 0xA801.
        _log.warning("move_destination_unknown", destination=destination, **where)
        yield None, None
        return
    try:
        stored = retrieve.select(qr.identifier(event), model)
    except InvalidQuery as exc:
        _log.warning("move_refused", destination=destination, reason=str(exc), **where)
        # pynetdicom takes a status only after a destination and a count,
        # and associates in between; Verification is all it needs to propose.
        yield remote.host, remote.port, {"contexts": [build_context(Verification)]}
        yield 1
        yield statuses.status(statuses.IDENTIFIER_INVALID, str(exc)), None
        return
    fields = {"destination": destination, **where}
    sender = Sender(storage, stored, event.assoc.requestor.ae_title, fields)
    handlers = [
        (evt.EVT_CONN_OPEN, association.sub_association_opened),
        (evt.EVT_ACCEPTED, lambda e: sender.install(e.assoc)),
    ]
    yield remote.host, remote.port, {"contexts": retrieve.contexts(stored), "evt_handlers": handlers}
    yield len(stored)
    _log.info("move_started", model=model.value, instances=len(stored), **fields)
    yield from sender.sub_operations(event, stored)


def handlers(storage: Storage, remotes: dict[str, Remote]) -> list[EventHandler]:
    return [(evt.EVT_C_MOVE, handle_move, [storage, remotes])]
