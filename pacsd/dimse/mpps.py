"""Modality Performed Procedure Step SCP: N-CREATE and N-SET (PS3.4 F.7),
translated to the Archive's mpps_create / mpps_set."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from pydicom.dataset import Dataset

from pacsd import log
from pacsd.domain.errors import MppsFinal, Refusal
from pacsd.services.archive import Archive
from pacsd.wire import command, dataset, statuses
from pacsd.wire.acceptor import Association
from pacsd.wire.link import Link, Message

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
_log = log.get("pacsd.mpps")


def serve_n_create(archive: Archive, link: Link, message: Message, association: Association) -> None:
    # The SCU may leave the instance UID to the SCP (PS3.7 10.1.5.1.3): answered with the one made.
    sop_uid = message.command.text(command.AFFECTED_SOP_INSTANCE) or f"2.25.{uuid.uuid4().int}"
    log_fields = association.log_fields()
    _serve(link, message, command.N_CREATE_RSP, sop_uid, lambda ds: archive.mpps_create(sop_uid, ds, log_fields))


def serve_n_set(archive: Archive, link: Link, message: Message, association: Association) -> None:
    sop_uid = message.command.text(command.REQUESTED_SOP_INSTANCE)
    log_fields = association.log_fields()
    _serve(link, message, command.N_SET_RSP, sop_uid, lambda ds: archive.mpps_set(sop_uid, ds, log_fields))


def _serve(link: Link, message: Message, field: int, sop_uid: str, call: Callable[[Dataset], object]) -> None:
    """Decode the attribute list, make the call, answer with its status."""
    code, comment = statuses.SOP_CLASS_NOT_SUPPORTED, statuses.wrong_context(message, {MPPS_SOP_CLASS})
    extra: list[tuple[int, str, object]] = []
    if not comment:
        try:
            call(_attributes(message))
            code = statuses.SUCCESS
        except Exception as exc:
            code, comment = statuses.mpps_failure(exc)
            if isinstance(exc, MppsFinal):
                extra.append((command.ERROR_ID, "US", statuses.MPPS_FINAL_ERROR_ID))
            elif not isinstance(exc, Refusal):  # a bug: logged with its traceback, answered, serving goes on
                _log.exception("mpps_failed", sop_instance_uid=sop_uid)
    rsp = command.n_response(message.command, field, code, sop_uid, comment, extra)
    link.send(int(message.context.context_id or 0), rsp)


def _attributes(message: Message) -> Dataset:
    if not isinstance(message.dataset, bytes) or not message.dataset:
        return Dataset()
    return dataset.decode(message.dataset, dataset.syntax_of(message.context))
