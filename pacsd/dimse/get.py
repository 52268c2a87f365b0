"""C-GET SCP: send what the Archive plans back over the requesting association."""

from __future__ import annotations

from pydicom.uid import UID

from pacsd import log
from pacsd.dimse import qr
from pacsd.dimse.suboperations import SubOperations, accepted, finish, unfetched
from pacsd.domain.errors import InvalidQuery
from pacsd.domain.outcomes import StoredInstance
from pacsd.services.archive import Archive
from pacsd.wire import command
from pacsd.wire.acceptor import Association
from pacsd.wire.link import Link, Message

_log = log.get("pacsd.get")


def serve_get(archive: Archive, link: Link, message: Message, association: Association) -> None:
    model = qr.model(link, message, command.C_GET_RSP, qr.GET, association)
    if model is None:
        return
    log_fields = association.log_fields()
    try:
        identifier = qr.identifier(message, archive.limits)
        plan = archive.plan_retrieve(identifier, model, qr.watch(link, message.command), log_fields)
    except InvalidQuery as exc:
        return qr.refuse(link, message, command.C_GET_RSP, exc, "get_refused", log_fields)
    missing = unfetched(plan.shortfalls)
    if missing.remaining:  # cancelled while fetching
        return finish(link, message, command.C_GET_RSP, missing)
    _log.info("get_started", model=model.value, instances=len(plan.instances), **log_fields)
    # The C-STOREs go back over this association, on the storage contexts
    # where the peer took the SCP role.
    usable = accepted(link.contexts, peer_is_scp=True)
    sendable, unsendable, note = _by_role(plan.instances, link, set(usable))
    if note:
        _log.warning("get_role_missing", reason=note, instances=len(unsendable), **log_fields)
    suboperations = SubOperations(link, message, command.C_GET_RSP, archive, link, usable, None, log_fields)
    tally = suboperations.run(sendable)
    tally.unfetched, tally.notes = missing.unfetched, missing.notes
    if unsendable and not tally.remaining:
        tally.total += len(unsendable)
        tally.failed += len(unsendable)
        tally.failed_uids += [instance.sop_uid for instance in unsendable]
        tally.notes.append(note)
    _log.info("get_done", completed=tally.completed, failed=tally.failed, warning=tally.warning,
              remaining=tally.remaining, **log_fields)  # fmt: skip
    suboperations.finish(tally)


def _by_role(
    stored: list[StoredInstance], link: Link, classes: set[str]
) -> tuple[list[StoredInstance], list[StoredInstance], str]:
    """Split *stored* into what can go back over *link* (its SOP class has a
    context on which the requester took the SCP role) and what cannot, with
    a comment naming the missing roles and contexts (PS3.4 C.4.3.1: a C-GET
    requester proposes each storage SOP class and negotiates the SCP role)."""
    sendable = [i for i in stored if i.sop_class_uid in classes]
    unsendable = [i for i in stored if i.sop_class_uid not in classes]
    if not unsendable:
        return sendable, unsendable, ""
    proposed = {str(cx.abstract_syntax) for cx in link.contexts.values()}
    missing = sorted({i.sop_class_uid for i in unsendable})
    no_role = [uid for uid in missing if uid in proposed]
    no_context = [uid for uid in missing if uid not in proposed]
    parts = []
    if no_role:
        parts.append("no SCP role negotiated (SCP/SCU Role Selection) for " + ", ".join(_name(u) for u in no_role))
    if no_context:
        parts.append("no presentation context proposed for " + ", ".join(_name(u) for u in no_context))
    return sendable, unsendable, "; ".join(parts)


def _name(sop_class_uid: str) -> str:
    name = UID(sop_class_uid).name
    return sop_class_uid if name == sop_class_uid else f"{name} ({sop_class_uid})"
