"""Thin pynetdicom event handlers: translate DIMSE in and out, call the domain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from pynetdicom.events import EventType

# What AE.start_server(evt_handlers=...) takes: (event, handler[, args]).
EventHandler: TypeAlias = tuple[EventType, Callable[..., Any]] | tuple[EventType, Callable[..., Any], list[Any]]
