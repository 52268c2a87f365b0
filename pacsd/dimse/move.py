"""C-MOVE SCP: send what the Archive plans to a known AE over a sub-association."""

from __future__ import annotations

from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacsd import log
from pacsd.config import Remote
from pacsd.dimse import qr
from pacsd.dimse.suboperations import SubOperations, accepted, contexts, finish, unfetched
from pacsd.domain.errors import DestinationUnreachable, InvalidQuery
from pacsd.ports import LogFields
from pacsd.services.archive import Archive
from pacsd.wire import command, requestor, statuses
from pacsd.wire.acceptor import Association
from pacsd.wire.link import Link, Message
from pacsd.wire.pdu import ProtocolError

_log = log.get("pacsd.move")


class Mover:
    """The C-MOVE service of one process: its Archive, the destinations it
    may send to ([remotes]), and how it calls them."""

    def __init__(self, archive: Archive, remotes: dict[str, Remote], network_timeout: float) -> None:
        self.archive = archive
        self.destinations = {remote.ae_title: remote for remote in remotes.values()}
        self.timeout = network_timeout

    def serve(self, link: Link, message: Message, association: Association) -> None:
        model = qr.model(link, message, command.C_MOVE_RSP, qr.MOVE, association)
        if model is None:
            return
        request, destination = message.command, message.command.text(command.MOVE_DESTINATION)
        log_fields = {"destination": destination, **association.log_fields()}
        remote = self.destinations.get(destination)
        try:
            if remote is None:  # checked before anything is read, fetched or sent
                _log.warning("move_destination_unknown", **log_fields)
                raise DestinationUnreachable(f"move destination {destination!r} is not in [remotes]")
            # The destination must take objects before anything is fetched for it.
            probe = lambda: requestor.release(self._associate(remote, [build_context(Verification)], log_fields))  # noqa: E731
            identifier = qr.identifier(message, self.archive.limits)
            plan = self.archive.plan_retrieve(identifier, model, qr.watch(link, request), log_fields, probe)
            tally = unfetched(plan.shortfalls)
            _log.info("move_started", model=model.value, instances=len(plan.instances), **log_fields)
            if tally.remaining or not plan.instances:  # cancelled while fetching, or nothing to send
                return finish(link, message, command.C_MOVE_RSP, tally)
            out = self._associate(remote, contexts(plan.instances), log_fields)
        except InvalidQuery as exc:
            return qr.refuse(link, message, command.C_MOVE_RSP, exc, "move_refused", log_fields)
        except DestinationUnreachable as exc:
            return qr.respond(link, message, command.C_MOVE_RSP, statuses.MOVE_DESTINATION_UNKNOWN, str(exc))
        # Sub-operations name who asked for them (PS3.7 9.3.1.1 Move Originator).
        originator = (association.calling_ae, request.us(command.MESSAGE_ID))
        suboperations = SubOperations(link, message, command.C_MOVE_RSP, self.archive, out, accepted(out.contexts),
                                      originator, log_fields)  # fmt: skip
        try:
            sent = suboperations.run(plan.instances)
        finally:
            requestor.release(out)
        sent.unfetched, sent.notes = tally.unfetched, tally.notes
        _log.info("move_done", completed=sent.completed, failed=sent.failed, warning=sent.warning,
                  remaining=sent.remaining, unfetched=sent.unfetched, **log_fields)  # fmt: skip
        suboperations.finish(sent)

    def _associate(self, remote: Remote, proposed: list[PresentationContext], log_fields: LogFields) -> Link:
        try:
            return requestor.associate(remote.host, remote.port, remote.ae_title, self.archive.ae_title, proposed,
                                       self.timeout, limits=self.archive.limits)  # fmt: skip
        except (OSError, requestor.AssociationRejected, ProtocolError) as exc:
            reason = f"cannot associate with {remote.ae_title} at {remote.host}:{remote.port}: {exc}"
            _log.warning("move_destination_unreachable", reason=reason, **log_fields)
            raise DestinationUnreachable(reason) from None
