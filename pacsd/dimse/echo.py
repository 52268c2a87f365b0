"""C-ECHO SCP."""

from __future__ import annotations

from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacsd import log
from pacsd.dimse import statuses
from pacsd.wire import command
from pacsd.wire.acceptor import Session
from pacsd.wire.link import Link, Message

_log = log.get("pacsd.echo")


def serve_echo(link: Link, message: Message, session: Session) -> None:
    refused = statuses.wrong_context(message, (Verification,))
    status = statuses.SOP_CLASS_NOT_SUPPORTED if refused else statuses.SUCCESS
    if refused:
        _log.warning("echo_refused", reason=refused, **session.fields())
    link.send(
        int(message.context.context_id or 0), command.response(message.command, command.C_ECHO_RSP, status, refused)
    )
