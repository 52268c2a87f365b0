"""C-GET SCP: send matching instances back over the requesting association."""

from __future__ import annotations

from pydicom.uid import UID

from pacsd import log
from pacsd.dimse import qr, statuses
from pacsd.dimse.suboperations import SubOperations, Tally, finish, unfetched
from pacsd.domain.errors import InvalidQuery
from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import StoredInstance
from pacsd.services import retrieve
from pacsd.storage.files import Storage
from pacsd.upstream.fetch import Proxy
from pacsd.wire import command
from pacsd.wire.acceptor import Session
from pacsd.wire.link import Link, Message

_log = log.get("pacsd.get")


def serve_get(
    link: Link, message: Message, session: Session, storage: Storage, proxy: Proxy | None, limits: Limits
) -> None:
    model = qr.model(link, message, command.C_GET_RSP, qr.GET, session)
    if model is None:
        return
    where = session.fields()
    try:
        query = qr.identifier(message, limits, session)
        stored = retrieve.select(query, model, limits)
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
        stored = retrieve.select(query, model, limits)
    _log.info("get_started", model=model.value, instances=len(stored), **where)
    # The C-STOREs go back over this association, on the storage contexts
    # where the peer took the SCP role.
    usable = {
        (str(cx.abstract_syntax), str(cx.transfer_syntax[0])): context_id
        for context_id, cx in link.contexts.items()
        if cx.as_scu
    }
    sendable, unsendable, note = _by_role(stored, link, {sop_class for sop_class, _ in usable})
    if note:
        _log.warning("get_role_missing", reason=note, instances=len(unsendable), **where)
    suboperations = SubOperations(link, message, command.C_GET_RSP, storage, link, usable, None, where)
    tally = suboperations.run(sendable)
    tally.unfetched, tally.notes = missing.unfetched, missing.notes
    if unsendable and not tally.remaining:
        tally.total += len(unsendable)
        tally.failed += len(unsendable)
        tally.failed_uids += [instance.sop_uid for instance in unsendable]
        tally.notes.append(note)
    _log.info(
        "get_done",
        completed=tally.completed,
        failed=tally.failed,
        warning=tally.warning,
        remaining=tally.remaining,
        **where,
    )
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
