"""C-MOVE SCP: send matching instances to a known AE over a sub-association."""

from __future__ import annotations

from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacsd import log
from pacsd.config import Remote
from pacsd.dimse import qr, statuses
from pacsd.dimse.suboperations import SubOperations, Tally, finish, unfetched
from pacsd.domain.errors import InvalidQuery
from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import StoredInstance
from pacsd.services import retrieve
from pacsd.storage.files import Storage
from pacsd.upstream.fetch import Proxy
from pacsd.wire import command, requestor
from pacsd.wire.acceptor import Session
from pacsd.wire.link import Link, Message
from pacsd.wire.pdu import ProtocolError

_log = log.get("pacsd.move")


def serve_move(
    link: Link,
    message: Message,
    session: Session,
    storage: Storage,
    remotes: dict[str, Remote],
    ae_title: str,
    timeout: float,
    proxy: Proxy | None,
    limits: Limits,
) -> None:
    request = message.command
    model = qr.model(link, message, command.C_MOVE_RSP, qr.MOVE, session)
    if model is None:
        return
    where = session.fields()
    destination = request.text(command.MOVE_DESTINATION)

    def answer(status: int, comment: str = "") -> None:
        qr.respond(link, message, command.C_MOVE_RSP, status, comment)

    remote = next((r for r in remotes.values() if r.ae_title == destination), None)
    if remote is None:
        # Checked before anything is read, fetched or sent.
        _log.warning("move_destination_unknown", destination=destination, **where)
        answer(statuses.MOVE_DESTINATION_UNKNOWN, f"move destination {destination!r} is not in [remotes]")
        return
    fields = {"destination": destination, **where}

    def associate(stored: list[StoredInstance]) -> Link | None:
        contexts = retrieve.contexts(stored) if stored else [build_context(Verification)]
        try:
            return requestor.associate(
                remote.host, remote.port, remote.ae_title, ae_title, contexts, timeout, limits=limits
            )
        except (OSError, requestor.AssociationRejected, ProtocolError) as exc:
            reason = f"cannot associate with {destination} at {remote.host}:{remote.port}: {exc}"
            _log.warning("move_destination_unreachable", reason=reason, **fields)
            answer(statuses.MOVE_DESTINATION_UNKNOWN, reason)
            return None

    try:
        query = qr.identifier(message, limits, session)
        stored = retrieve.select(query, model, limits)
    except InvalidQuery as exc:
        _log.warning("move_refused", destination=destination, reason=str(exc), **where)
        answer(statuses.IDENTIFIER_INVALID, str(exc))
        return
    tally = Tally(0)
    if proxy is not None:
        # The destination must take the objects before anything is fetched for it.
        probe = associate([])
        if probe is None:
            return
        requestor.release(probe)
        tally = unfetched(proxy.make_local(query, qr.watch(link, request), fields))
        if tally.remaining:  # cancelled while fetching
            finish(link, message, command.C_MOVE_RSP, tally)
            return
        stored = retrieve.select(query, model, limits)
    _log.info("move_started", model=model.value, instances=len(stored), **fields)
    if not stored:
        finish(link, message, command.C_MOVE_RSP, tally)
        return
    out = associate(stored)
    if out is None:
        return
    usable = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])): cx_id for cx_id, cx in out.contexts.items()}
    # Sub-operations name who asked for them (PS3.7 9.3.1.1 Move Originator).
    originator = (session.calling_ae, request.us(command.MESSAGE_ID))
    suboperations = SubOperations(link, message, command.C_MOVE_RSP, storage, out, usable, originator, fields)
    try:
        sent = suboperations.run(stored)
    finally:
        requestor.release(out)
    sent.unfetched, sent.notes = tally.unfetched, tally.notes
    _log.info("move_done", completed=sent.completed, failed=sent.failed, warning=sent.warning,
              remaining=sent.remaining, unfetched=sent.unfetched, **fields)  # fmt: skip
    suboperations.finish(sent)
