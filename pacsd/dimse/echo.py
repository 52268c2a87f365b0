"""C-ECHO SCP."""

from __future__ import annotations

from pynetdicom import evt

from pacsd.dimse import EventHandler
from pacsd.dimse.statuses import SUCCESS


def handle_echo(event: evt.Event) -> int:
    return SUCCESS


HANDLERS: list[EventHandler] = [(evt.EVT_C_ECHO, handle_echo)]
