"""Talking to an upstream PACS as a requestor, over pacsd's upper layer.

Every wait is bounded: opening the association by ``connect_timeout``,
each response by ``response_timeout``, a whole fetch by its deadline.
While waiting, a *watch* callback is called every ``WATCH_INTERVAL``
seconds; it raises :class:`Cancelled` when our own client has cancelled
(the operation is then cancelled upstream with C-CANCEL) or lets the
client's abort through.
"""

from __future__ import annotations

import itertools
import select
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext

from pacsd.config import Upstream
from pacsd.domain.errors import Cancelled
from pacsd.domain.limits import BudgetExceeded, Limits
from pacsd.ports import Watch, no_watch
from pacsd.wire import command, dataset, requestor
from pacsd.wire.command import Command
from pacsd.wire.link import LINK_ENDED, Link, Message
from pacsd.wire.pdu import ProtocolError

WATCH_INTERVAL = 0.1
SYNTAXES: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
PENDING_STATUSES = {0xFF00, 0xFF01}  # Pending, and Pending with optional keys unsupported
CANCEL_GRACE = 5.0  # seconds to wait for the upstream's answer to C-CANCEL


class UpstreamError(Exception):
    """The upstream could not be reached, refused, failed or went silent;
    the message says which and names the upstream."""


class UpstreamSession:
    """One association with an upstream."""

    def __init__(self, upstream: Upstream, link: Link, deadline: float) -> None:
        self.upstream = upstream
        self.link = link
        self.deadline = deadline
        self.name = upstream.remote.name
        self._contexts: dict[int, int] = {}  # Message ID -> context ID of our requests

    @classmethod
    def open(
        cls,
        upstream: Upstream,
        calling_ae: str,
        contexts: list[PresentationContext],
        deadline: float,
        limits: Limits,
        spool_dir: str | None = None,
    ) -> UpstreamSession:
        """An association with *upstream*; what it sends is bounded by
        *limits*, and C-STOREs it sends (C-GET) spool to *spool_dir*."""
        remote = upstream.remote
        try:
            link = requestor.associate(
                remote.host, remote.port, remote.ae_title, calling_ae, contexts, upstream.connect_timeout,
                scp_roles=[str(cx.abstract_syntax) for cx in contexts if cx.scp_role], limits=limits,
                spool_dir=spool_dir,
            )  # fmt: skip
        except requestor.AssociationRejected as exc:
            raise UpstreamError(f"{remote.name} ({remote.ae_title}) {exc}") from None
        except (OSError, ProtocolError) as exc:
            raise UpstreamError(f"cannot reach {remote.name} at {remote.host}:{remote.port}: {exc}") from None
        link.sock.settimeout(upstream.response_timeout)
        return cls(upstream, link, deadline)

    def __enter__(self) -> UpstreamSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            requestor.release(self.link)
        else:  # mid-operation: nothing more to say to it
            self.link.abort()
            self.link.sock.close()

    def context_for(self, abstract_syntax: str) -> PresentationContext:
        for cx in self.link.contexts.values():
            if str(cx.abstract_syntax) == abstract_syntax:
                return cx
        raise UpstreamError(f"{self.name} did not accept {UID(abstract_syntax).name}")

    def request(
        self,
        abstract_syntax: str,
        field: int,
        identifier: Dataset,
        message_id: int | None = None,
        extra: list[tuple[int, str, Any]] | None = None,
    ) -> int:
        """Send a C-FIND/C-MOVE/C-GET request; its Message ID."""
        cx = self.context_for(abstract_syntax)
        message_id = message_id or next(_ids)
        elements: list[tuple[int, str, Any]] = [
            (command.AFFECTED_SOP_CLASS, "UI", abstract_syntax),
            (command.COMMAND_FIELD, "US", field),
            (command.MESSAGE_ID, "US", message_id),
            (command.PRIORITY, "US", 0),
            (command.DATASET_TYPE, "US", command.HAS_DATASET),
            *(extra or []),
        ]
        try:
            data = dataset.encode(identifier, dataset.syntax_of(cx))
        except ValueError as exc:
            raise UpstreamError(f"the request identifier cannot be sent: {exc}") from None
        self._contexts[message_id] = int(cx.context_id or 0)
        self.link.send(self._contexts[message_id], command.encode(sorted(elements)), data)
        return message_id

    def responses(self, message_id: int, watch: Watch) -> Iterator[Message]:
        """Every message the upstream sends until the final response to
        *message_id* (included). C-STORE requests (C-GET) are yielded too.
        Raises UpstreamError on silence, overrun deadline or a broken
        association, and Cancelled after relaying our client's cancel."""
        cancelled = False
        while True:
            if cancelled:
                self._wait(no_watch, min(self.deadline, time.monotonic() + CANCEL_GRACE))
            else:
                try:
                    self._wait(watch, self.deadline)
                except Cancelled:
                    cancelled = True
                    self._send_cancel(message_id)
                    continue
            try:
                message = self.link.receive()
            except TimeoutError:
                raise UpstreamError(f"{self.name} sent nothing for {self.upstream.response_timeout:.0f} s") from None
            except LINK_ENDED as exc:
                raise UpstreamError(f"{self.name} broke off the association: {type(exc).__name__} {exc}") from None
            except BudgetExceeded as exc:  # the upstream's fault: our client's association goes on
                raise UpstreamError(f"{self.name} sent more than allowed: {exc}") from None
            yield message
            if message.command.field & 0x8000 and message.command.us(command.RESPONDING_TO) == message_id:
                if message.command.us(command.STATUS) not in PENDING_STATUSES:
                    if cancelled:
                        raise Cancelled
                    return

    def _wait(self, watch: Watch, deadline: float) -> None:
        """Until the upstream has sent something: watch, check the clocks."""
        silent_since = time.monotonic()
        watch()  # also while the upstream is busy talking: a cancel must not wait for silence
        while not self.link.pending():
            now = time.monotonic()
            if now > deadline:
                raise UpstreamError(
                    f"{self.name}: gave up after the fetch timeout of {self.upstream.fetch_timeout:.0f} s"
                )
            if now - silent_since > self.upstream.response_timeout:
                raise UpstreamError(f"{self.name} sent nothing for {self.upstream.response_timeout:.0f} s")
            select.select([self.link.sock], [], [], WATCH_INTERVAL)
            watch()

    def _send_cancel(self, message_id: int) -> None:
        cancel = command.encode(
            [
                (command.COMMAND_FIELD, "US", command.C_CANCEL_RQ),
                (command.RESPONDING_TO, "US", message_id),
                (command.DATASET_TYPE, "US", command.NO_DATASET),
            ]
        )
        self.link.send(self._contexts[message_id], cancel)

    def find(self, abstract_syntax: str, keys: Dataset, watch: Watch) -> Iterator[Dataset]:
        """One C-FIND on this association, its answers passed through the
        upstream's query filter; *keys* have been through :func:`outgoing`."""
        message_id = self.request(abstract_syntax, command.C_FIND_RQ, keys)
        query_filter = self.upstream.query_filter
        for message in self.responses(message_id, watch):
            status, comment = final_status(message)
            if status not in PENDING_STATUSES:
                if status != 0x0000:
                    raise UpstreamError(f"{self.name} answered the C-FIND with 0x{status:04X} {comment}".rstrip())
                return
            response: Dataset | None = identifier(message)
            if query_filter is not None:
                response = query_filter("response", response)
            if response is not None:
                yield response

    def answer_store(self, request: Message, status: int, comment: str = "") -> None:
        """Answer a C-STORE the upstream sent on this association (C-GET)."""
        rsp = command.response(request.command, command.C_STORE_RSP, status, comment)
        self.link.send(int(request.context.context_id or 0), rsp)


def identifier(message: Message) -> Dataset:
    """A response's identifier (never spooled: only C-STORE datasets are)."""
    if not isinstance(message.dataset, bytes) or not message.dataset:
        return Dataset()
    return dataset.decode(message.dataset, dataset.syntax_of(message.context))


def final_status(message: Message) -> tuple[int, str]:
    cmd: Command = message.command
    return cmd.us(command.STATUS, 0xFFFF), cmd.text(command.ERROR_COMMENT)


def outgoing(upstream: Upstream, keys: Dataset) -> Dataset | None:
    """*keys* as they may go to *upstream*: through its query filter (on a
    copy), or None if the filter drops the query."""
    if upstream.query_filter is None:
        return keys
    filtered: Dataset | None = upstream.query_filter("query", Dataset(keys))
    return filtered


_ids = itertools.cycle(range(1, 65536))  # Message IDs of our requests
