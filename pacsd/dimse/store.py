"""C-STORE SCP: hand the encoded dataset to ingest, map its answer."""

from __future__ import annotations

import time
from typing import Any

from pynetdicom import AllStoragePresentationContexts

from pacsd import log
from pacsd.dimse import statuses
from pacsd.domain.errors import OverBudget, Refusal
from pacsd.domain.received import Received
from pacsd.services.ingest import Ingest
from pacsd.upstream.fetch import Proxy
from pacsd.wire import command, dataset
from pacsd.wire.acceptor import Session
from pacsd.wire.link import Link, Message

_log = log.get("pacsd.store")

STORAGE_CLASSES = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)


def store(ingest: Ingest, received: Received, where: dict[str, Any]) -> tuple[int, str]:
    """Ingest *received*; the (status, error comment) to answer with."""
    start = time.perf_counter()
    try:
        outcome = ingest.store(received)
    except Refusal as refusal:
        code = statuses.store_refusal_code(refusal)
        if isinstance(refusal, OverBudget):
            _log.warning("budget_exceeded", budget=refusal.budget, reason=str(refusal), **where)
        _log.warning(
            "store_refused",
            sop_instance_uid=received.sop_instance_uid,
            status=f"0x{code:04X}",
            reason=str(refusal),
            ms=log.ms_since(start),
            **where,
        )
        return code, str(refusal)
    except Exception as exc:  # a bug: answer, log, keep serving
        _log.exception("store_failed", sop_instance_uid=received.sop_instance_uid, **where)
        return statuses.PROCESSING_FAILURE, f"internal error: {type(exc).__name__}"
    code = statuses.STORE_RESULTS[outcome.result]
    if outcome.header.problems:  # stored, with these index fields left empty
        ignored = [problem._asdict() for problem in outcome.header.problems]
        _log.warning("index_value_ignored", sop_instance_uid=received.sop_instance_uid, values=ignored, **where)
    _log.info(
        "stored",
        result=outcome.result.value,
        sop_instance_uid=received.sop_instance_uid,
        study_uid=outcome.header.study_uid,
        status=f"0x{code:04X}",
        ms=log.ms_since(start),
        **where,
    )
    return code, outcome.comment


def serve_store(link: Link, message: Message, session: Session, ingest: Ingest, proxy: Proxy | None) -> None:
    """A spooled dataset is copied into place by ingest or staging; the
    acceptor removes its spool file after this returns."""
    request = message.command
    refused = statuses.wrong_context(message, STORAGE_CLASSES)
    if refused:
        _log.warning("store_refused", status=f"0x{statuses.SOP_CLASS_NOT_SUPPORTED:04X}", reason=refused,
                     sop_instance_uid=request.text(command.AFFECTED_SOP_INSTANCE), **session.fields())  # fmt: skip
        code, comment = statuses.SOP_CLASS_NOT_SUPPORTED, refused
    else:
        code, comment = _store_or_stage(message, session, ingest, proxy)
    link.send(int(message.context.context_id or 0), command.response(request, command.C_STORE_RSP, code, comment))


def _store_or_stage(message: Message, session: Session, ingest: Ingest, proxy: Proxy | None) -> tuple[int, str]:
    request = message.command
    received = dataset.received(message, session.calling_ae)
    originator = (request.text(command.MOVE_ORIGINATOR_AE), request.us(command.MOVE_ORIGINATOR_ID))
    fetch = proxy.fetch_arrival(*originator, session.calling_ae) if proxy is not None else None
    if proxy is not None and fetch is not None:  # an upstream answering our C-MOVE: staged, not indexed
        return proxy.stage_arrival(fetch, received, session.fields())
    return store(ingest, received, session.fields())
