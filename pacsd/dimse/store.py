"""C-STORE SCP: the request to a Received object, the Archive's answer to a status."""

from __future__ import annotations

import time

from pynetdicom import AllStoragePresentationContexts

from pacsd import log
from pacsd.domain.errors import OverBudget, Refusal
from pacsd.services.archive import Archive
from pacsd.wire import command, dataset, statuses
from pacsd.wire.acceptor import Association
from pacsd.wire.link import Link, Message

_log = log.get("pacsd.store")

STORAGE_CLASSES = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)


def serve_store(archive: Archive, link: Link, message: Message, association: Association) -> None:
    """A spooled dataset is copied into place by the Archive; the acceptor
    removes its spool file after this returns."""
    start, request, log_fields = time.perf_counter(), message.command, association.log_fields()
    sop_uid = request.text(command.AFFECTED_SOP_INSTANCE)
    code, comment = statuses.SOP_CLASS_NOT_SUPPORTED, statuses.wrong_context(message, STORAGE_CLASSES)
    outcome = None
    if not comment:
        originator = (request.text(command.MOVE_ORIGINATOR_AE), request.us(command.MOVE_ORIGINATOR_ID))
        try:
            outcome = archive.store(dataset.received(message, association.calling_ae), originator)
        except Exception as exc:
            code, comment = statuses.store_failure(exc)
            if not isinstance(exc, Refusal):  # a bug: logged with its traceback, answered, serving goes on
                _log.exception("store_failed", sop_instance_uid=sop_uid, **log_fields)
            elif isinstance(exc, OverBudget):
                _log.warning("budget_exceeded", budget=exc.budget, reason=comment, **log_fields)
        else:
            code, comment = statuses.STORE_RESULTS[outcome.result], outcome.comment
            if outcome.header.problems:  # stored, with these index fields left empty
                ignored = [problem._asdict() for problem in outcome.header.problems]
                _log.warning("index_value_ignored", sop_instance_uid=sop_uid, values=ignored, **log_fields)
            _log.info("stored", result=outcome.result.value, sop_instance_uid=sop_uid,
                      study_uid=outcome.header.study_uid, status=f"0x{code:04X}", ms=log.ms_since(start),
                      **log_fields)  # fmt: skip
    if outcome is None:
        _log.warning("store_refused", sop_instance_uid=sop_uid, status=f"0x{code:04X}", reason=comment,
                     ms=log.ms_since(start), **log_fields)  # fmt: skip
    link.send(int(message.context.context_id or 0), command.response(request, command.C_STORE_RSP, code, comment))
