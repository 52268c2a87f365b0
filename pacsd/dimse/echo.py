"""C-ECHO SCP."""

from __future__ import annotations

from pacsd.dimse.statuses import SUCCESS
from pacsd.wire import command
from pacsd.wire.acceptor import Session
from pacsd.wire.link import Link, Message


def serve_echo(link: Link, message: Message, session: Session) -> None:
    link.send(int(message.context.context_id or 0), command.response(message.command, command.C_ECHO_RSP, SUCCESS))
