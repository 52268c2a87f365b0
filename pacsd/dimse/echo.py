"""C-ECHO SCP."""

from __future__ import annotations

from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacsd import log
from pacsd.wire import command, statuses
from pacsd.wire.acceptor import Association
from pacsd.wire.link import Link, Message

_log = log.get("pacsd.echo")


def serve_echo(link: Link, message: Message, association: Association) -> None:
    refused = statuses.wrong_context(message, (Verification,))
    status = statuses.SOP_CLASS_NOT_SUPPORTED if refused else statuses.SUCCESS
    if refused:
        _log.warning("echo_refused", reason=refused, **association.log_fields())
    link.send(
        int(message.context.context_id or 0), command.response(message.command, command.C_ECHO_RSP, status, refused)
    )
