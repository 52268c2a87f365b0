"""C-MOVE SCP: send matching instances to a known AE over a sub-association."""

from __future__ import annotations

from pacsd import log, retrieve
from pacsd.config import Remote
from pacsd.dimse import qr, statuses
from pacsd.dimse.suboperations import SubOperations, Tally
from pacsd.errors import InvalidQuery
from pacsd.storage import Storage
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
) -> None:
    request = message.command
    model = qr.model(message, qr.MOVE)
    where = session.fields()
    destination = request.text(command.MOVE_DESTINATION)

    def answer(status: int, comment: str = "") -> None:
        qr.respond(link, message, command.C_MOVE_RSP, status, comment)

    remote = next((r for r in remotes.values() if r.ae_title == destination), None)
    if remote is None:
        # Checked before anything is read or sent.
        _log.warning("move_destination_unknown", destination=destination, **where)
        answer(statuses.MOVE_DESTINATION_UNKNOWN, f"move destination {destination!r} is not in [remotes]")
        return
    try:
        stored = retrieve.select(qr.identifier(message), model)
    except InvalidQuery as exc:
        _log.warning("move_refused", destination=destination, reason=str(exc), **where)
        answer(statuses.IDENTIFIER_INVALID, str(exc))
        return
    fields = {"destination": destination, **where}
    _log.info("move_started", model=model.value, instances=len(stored), **fields)
    if not stored:
        qr.respond(link, message, command.C_MOVE_RSP, statuses.SUCCESS, counts=Tally(0).counts(False))
        return
    try:
        out = requestor.associate(
            remote.host, remote.port, remote.ae_title, ae_title, retrieve.contexts(stored), timeout
        )
    except (OSError, requestor.AssociationRejected, ProtocolError) as exc:
        reason = f"cannot associate with {destination} at {remote.host}:{remote.port}: {exc}"
        _log.warning("move_destination_unreachable", reason=reason, **fields)
        answer(statuses.MOVE_DESTINATION_UNKNOWN, reason)
        return
    usable = {
        (str(cx.abstract_syntax), str(cx.transfer_syntax[0])): int(cx.context_id or 0) for cx in out.contexts.values()
    }
    # Sub-operations name who asked for them (PS3.7 9.3.1.1 Move Originator).
    originator = (session.calling_ae, request.us(command.MESSAGE_ID))
    suboperations = SubOperations(link, message, command.C_MOVE_RSP, storage, out, usable, originator, fields)
    try:
        tally = suboperations.run(stored)
    finally:
        requestor.release(out)
    _log.info(
        "move_done",
        completed=tally.completed,
        failed=tally.failed,
        warning=tally.warning,
        remaining=tally.remaining,
        **fields,
    )
    suboperations.finish(tally)
