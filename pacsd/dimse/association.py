"""Association events: log opened/closed/rejected with who and from where."""

from __future__ import annotations

import itertools
import socket
import weakref
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association

from pacsd import log
from pacsd.dimse import EventHandler

_serials = itertools.count(1)
_ids: weakref.WeakKeyDictionary[Association, int] = weakref.WeakKeyDictionary()
_log = log.get("pacsd.association")


def fields(assoc: Association) -> dict[str, Any]:
    """Identifiers of *assoc* for every log line about it."""
    if assoc not in _ids:
        _ids[assoc] = next(_serials)
    return {
        "assoc": _ids[assoc],
        "calling_ae": assoc.requestor.ae_title,
        "peer": f"{assoc.requestor.address}:{assoc.requestor.port}",
    }


def no_delay(event: evt.Event) -> None:
    # pynetdicom leaves Nagle on: a response written in pieces then waits
    # for the peer's delayed ACK, 40 ms per message on Linux.
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# pynetdicom's DUL thread sleeps this long between polls when it has nothing
# to do (default 1 ms). A C-MOVE sub-association is a strict request/reply
# loop that spends its life waiting, so it polls ten times as often: 100
# sub-operations to storescp took 0.55 s with the default, 0.48 s with this.
SUB_ASSOCIATION_POLL = 0.0001


def sub_association_opened(event: evt.Event) -> None:
    no_delay(event)
    event.assoc.dul._run_loop_delay = SUB_ASSOCIATION_POLL


def _accepted(event: evt.Event) -> None:
    _log.info("association_opened", called_ae=event.assoc.acceptor.ae_title, **fields(event.assoc))


def _released(event: evt.Event) -> None:
    _log.info("association_closed", how="released", **fields(event.assoc))


def _aborted(event: evt.Event) -> None:
    _log.info("association_closed", how="aborted", **fields(event.assoc))


def _rejected(event: evt.Event) -> None:
    assoc = event.assoc
    allowed = [t.strip() for t in assoc.ae.require_calling_aet]
    if allowed and assoc.requestor.ae_title not in allowed:
        reason = "calling AE title not in allowed_calling_aes"
    else:
        reason = "too many associations"
    _log.warning("association_rejected", reason=reason, **fields(assoc))


HANDLERS: list[EventHandler] = [
    (evt.EVT_CONN_OPEN, no_delay),
    (evt.EVT_ACCEPTED, _accepted),
    (evt.EVT_RELEASED, _released),
    (evt.EVT_ABORTED, _aborted),
    (evt.EVT_REJECTED, _rejected),
]
