"""An established association: DIMSE messages in and out over one socket.

Used by both sides: the acceptor serving a peer's requests and the
requestor sending C-STOREs (retrieve sub-operations). Everything happens
in the calling thread; there is no queue between the socket and the
caller, so a response is on the wire as soon as it is written.

Every cost a peer controls is bounded here (``pacsd.domain.limits``): the size of
a PDU, of a command set, of a dataset, the fragments of a message, the
time a PDU and the association may take. Sending never holds more than a
batch of PDUs, whatever the peer's maximum PDU.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pynetdicom.presentation import PresentationContext

from pacsd.domain.limits import BudgetExceeded, Limits, MiB
from pacsd.domain.part10 import FileRegion
from pacsd.domain.received import Spooled
from pacsd.wire import command, pdu
from pacsd.wire.command import Command
from pacsd.wire.pdu import PduError, ProtocolError
from pacsd.wire.spool import Spool

READ_CHUNK = 1 << 18
IOV_MAX = 512  # buffers per sendmsg; Linux allows 1024
SEND_BATCH = 1 * MiB  # bytes of PDUs built before they are sent
COPY_BELOW = 4096  # fragments smaller than this are copied into the batch (an iovec entry costs more)
FILE_CHUNK = 4 * MiB  # bytes read from a file at a time while sending it
DEADLINE_SLACK = 1.0  # seconds a read may overrun its deadline, rather than reset the socket timeout per recv
# A response's dataset (a C-FIND-RSP identifier from an upstream, a Failed
# SOP Instance UID List) may be this many times max_identifier_bytes.
RESPONSE_IDENTIFIER_FACTOR = 16

DEADLINE_REASONS = {
    "pdu_timeout": "a PDU took longer than pdu_timeout to arrive",
    "associate_timeout": "no complete A-ASSOCIATE-RQ within associate_timeout",
    "association_timeout": "the association lasted longer than association_timeout",
}


class Aborted(Exception):
    """The peer sent A-ABORT."""


class Released(Exception):
    """The peer released the association (we have answered A-RELEASE-RP)."""


class ClientGone(Aborted):
    """Our client's association ended (abort, release, broken connection)
    while its request waited on something else (an upstream, a lock); the
    acceptor closes it as aborted."""


# What ends a link mid-operation; adapters let these through to the acceptor.
# BudgetExceeded is not among them: it is the acceptor's to log and answer.
LINK_ENDED = (Released, Aborted, ProtocolError, OSError)


Payload = bytes | bytearray | memoryview | FileRegion


@dataclass(frozen=True)
class Message:
    context: PresentationContext
    command: Command
    # Encoded in the context's transfer syntax. A C-STORE-RQ's dataset past
    # limits.spool_bytes (with a spool directory) is a file: whoever takes
    # the message removes it (``discard`` when it is abandoned).
    dataset: bytes | Spooled | None

    def discard(self) -> None:
        if isinstance(self.dataset, Spooled):
            self.dataset.discard()


class SocketReader:
    """Buffered reads of exact sizes under deadlines, able to say without
    blocking whether anything has arrived (a BufferedReader cannot).

    The socket's own timeout is the silence allowed per recv (the network
    timeout); a read's *deadline* and the reader's *end* (the whole
    association, or its A-ASSOCIATE-RQ) bound the total, however the peer
    spaces its bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.end: float | None = None  # time.monotonic() by which everything must be done
        self.end_budget = "association_timeout"

    def read(self, size: int, deadline: float | None = None) -> bytes:
        while len(self.buffer) < size:
            chunk = self._recv(max(size - len(self.buffer), READ_CHUNK), deadline)
            if not chunk:
                break
            self.buffer += chunk
        if len(self.buffer) <= size:
            data = bytes(self.buffer)
            self.buffer = bytearray()
        else:
            data = bytes(memoryview(self.buffer)[:size])
            del self.buffer[:size]
        return data

    def buffered(self) -> int:
        return len(self.buffer)

    def check(self) -> None:
        """Raise BudgetExceeded if the reader's end has passed."""
        if self.end is not None and time.monotonic() >= self.end:
            raise BudgetExceeded(self.end_budget, DEADLINE_REASONS[self.end_budget])

    def _recv(self, size: int, deadline: float | None) -> bytes:
        due, budget = self._due(deadline)
        if due is None:
            return self.sock.recv(size)
        remaining = due - time.monotonic()
        if remaining <= 0:
            raise BudgetExceeded(budget, DEADLINE_REASONS[budget])
        idle = self.sock.gettimeout()
        if idle is not None and idle <= remaining + DEADLINE_SLACK:
            # A timeout here is silence (the network timeout); the deadline
            # is kept to within DEADLINE_SLACK without changing the socket's
            # timeout twice per recv (each change is a system call).
            return self.sock.recv(size)
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise BudgetExceeded(budget, DEADLINE_REASONS[budget]) from None
        finally:
            self.sock.settimeout(idle)

    def _due(self, deadline: float | None) -> tuple[float | None, str]:
        if self.end is not None and (deadline is None or self.end <= deadline):
            return self.end, self.end_budget
        return deadline, "pdu_timeout"

    def pending(self) -> bool:
        if self.buffer:
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)


class Link:
    def __init__(
        self,
        sock: socket.socket,
        contexts: Sequence[PresentationContext],
        peer_max_pdu: int,
        reader: SocketReader | None = None,
        limits: Limits | None = None,
        spool_dir: str | None = None,
    ) -> None:
        """*spool_dir*: where C-STORE datasets past limits.spool_bytes go
        as they arrive (None: they stay in memory, bounded by their budget)."""
        self.sock = sock
        self.contexts = {int(cx.context_id or 0): cx for cx in contexts}
        self.fragment = pdu.fragment_size(peer_max_pdu)
        self._reader = reader or SocketReader(sock)
        self.limits = limits or Limits()
        self.spool_dir = spool_dir
        # Message IDs the peer has cancelled (C-CANCEL-RQ) while we work.
        self.cancels: set[int] = set()

    @property
    def reader(self) -> SocketReader:
        return self._reader

    # -- receiving -------------------------------------------------------

    def receive(self) -> Message:
        """The next complete message; raises Released, Aborted,
        ProtocolError (PduError when the upper layer itself is broken) or
        BudgetExceeded. What an abandoned message received is dropped."""
        incoming = _Incoming(self)
        try:
            while True:
                kind, body = self.read_pdu()
                if kind == pdu.RELEASE_RQ:
                    self.sock.sendall(pdu.fixed(pdu.RELEASE_RP))
                    raise Released
                if kind == pdu.ABORT:
                    raise Aborted
                if kind != pdu.P_DATA:
                    raise PduError(
                        f"unexpected PDU type 0x{kind:02X} on an established association", pdu.REASON_UNEXPECTED_PDU
                    )
                message = incoming.add(body)
                if message is not None:
                    return message
        except BaseException:
            incoming.discard()
            raise

    def read_pdu(self) -> tuple[int, bytes]:
        limit = self.limits.max_pdu_bytes + pdu.HEADER_SLACK
        return pdu.read(self._reader, limit, "max_pdu_bytes", self.limits.pdu_timeout)

    def note_cancel(self, message: Message) -> None:
        """Take *message*, which arrived during an operation: a C-CANCEL is
        noted; anything else breaks the protocol (we negotiate no
        asynchronous operations)."""
        if message.command.field != command.C_CANCEL_RQ:
            message.discard()
            raise ProtocolError(f"command 0x{message.command.field:04X} arrived while an operation was in progress")
        self.cancels.add(message.command.us(command.RESPONDING_TO))

    def pending(self) -> bool:
        """Whether the peer has sent anything we have not read (a C-CANCEL
        during a long operation); never blocks."""
        return self._reader.pending()

    # -- sending ---------------------------------------------------------

    def send(self, context_id: int, cmd: bytes, dataset: Payload | None = None) -> None:
        """One message: the command, then the dataset (bytes, or a region
        of a file read as it goes), each in PDVs that fit the peer's
        maximum PDU, sent in batches of about SEND_BATCH bytes."""
        self._reader.check()
        batch = _Batch(self.sock)
        if len(cmd) <= self.fragment and (dataset is None or 0 < len(dataset) <= self.fragment):
            if not isinstance(dataset, FileRegion):  # one PDV each, the common case: no fragmenting
                batch.buffers = [pdu.p_data_header(context_id, pdu.COMMAND | pdu.LAST, len(cmd)), cmd]
                if dataset is not None:
                    batch.buffers += (pdu.p_data_header(context_id, pdu.LAST, len(dataset)), dataset)
                batch.flush()
                return
        self._fragments(batch, context_id, pdu.COMMAND, iter([memoryview(cmd)]), len(cmd))
        if dataset is not None:
            self._fragments(batch, context_id, 0, self._chunks(dataset), len(dataset))
        batch.flush()

    def _chunks(self, dataset: Payload) -> Iterator[memoryview]:
        if not isinstance(dataset, FileRegion):
            yield memoryview(dataset)
            return
        # Whole fragments per chunk, so that only the very last one is short.
        size = max(self.fragment, FILE_CHUNK // self.fragment * self.fragment)
        with open(dataset.path, "rb", buffering=0) as file:
            offset, left = dataset.offset, dataset.length
            while left:
                chunk = os.pread(file.fileno(), min(size, left), offset)
                if not chunk:
                    raise OSError(f"{dataset.path}: ends {left} bytes before the region to send")
                offset += len(chunk)
                left -= len(chunk)
                yield memoryview(chunk)

    def _fragments(self, batch: _Batch, context_id: int, kind: int, chunks: Iterator[memoryview], total: int) -> None:
        """PDVs of *total* bytes from *chunks*, the last one flagged."""
        if total == 0:
            batch.add(pdu.p_data_header(context_id, kind | pdu.LAST, 0), memoryview(b""))
            return
        step = self.fragment
        full = pdu.p_data_header(context_id, kind, step)  # the same for every fragment but the last
        sent = 0
        for chunk in chunks:
            for start in range(0, len(chunk), step):
                piece = chunk[start : start + step]
                sent += len(piece)
                if sent >= total:
                    header = pdu.p_data_header(context_id, kind | pdu.LAST, len(piece))
                elif len(piece) == step:
                    header = full
                else:
                    header = pdu.p_data_header(context_id, kind, len(piece))
                batch.add(header, piece)
        if sent != total:
            raise OSError(f"dataset ended after {sent} of the {total} bytes announced")

    def abort(self, source: int = pdu.SOURCE_USER, reason: int = pdu.REASON_NOT_SPECIFIED) -> None:
        """A-ABORT (by default: service user, reason not specified); never raises."""
        try:
            self.sock.sendall(pdu.abort(source, reason))
        except OSError:
            pass


class _Incoming:
    """One message being received: its command set, its dataset's Spool,
    and the count of its PDVs, each within its budget."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.limits = link.limits
        self.command_bytes = bytearray()
        self.cmd: Command | None = None
        self.context_id: int | None = None
        self.spool: Spool | None = None
        self.fragments = 0
        self.done = False

    def add(self, body: bytes) -> Message | None:
        """Take one P-DATA-TF body; the message once it is complete."""
        for cx, control, data in pdu.pdvs(body):
            if self.done:
                raise PduError("PDV after the end of a message (asynchronous operations were not negotiated)")
            self.fragments += 1
            if self.fragments > self.limits.max_fragments:
                raise BudgetExceeded(
                    "max_fragments", f"message of more than {self.limits.max_fragments} PDVs (max_fragments)"
                )
            if cx not in self.link.contexts:
                raise PduError(f"PDV on presentation context {cx}, which was not accepted")
            if self.context_id is not None and cx != self.context_id:
                raise PduError(f"PDV on presentation context {cx} inside a message on context {self.context_id}")
            self.context_id = cx
            if control & pdu.COMMAND:
                self._command(control, data)
            else:
                self._data(control, data)
        if not self.done:
            return None
        assert self.cmd is not None and self.context_id is not None
        dataset = self.spool.finish() if self.spool is not None else None
        self.spool = None
        return Message(self.link.contexts[self.context_id], self.cmd, dataset)

    def _command(self, control: int, data: memoryview) -> None:
        if self.cmd is not None:
            raise PduError("command fragment after the end of the command")
        if len(self.command_bytes) + len(data) > self.limits.max_command_bytes:
            raise BudgetExceeded("max_command_bytes", f"command set of more than {self.limits.max_command_bytes} bytes")
        self.command_bytes += data
        if control & pdu.LAST:
            self.cmd = command.decode(bytes(self.command_bytes))
            self.command_bytes = bytearray()
            if self.cmd.has_dataset:
                self.spool = self._spool_for(self.cmd)
            else:
                self.done = True

    def _data(self, control: int, data: memoryview) -> None:
        if self.spool is None:
            raise PduError("dataset fragment without its command")
        self.spool.write(data)
        self.done = bool(control & pdu.LAST)

    def _spool_for(self, cmd: Command) -> Spool:
        """Where the dataset of *cmd* goes, and the budget it must fit."""
        limits = self.limits
        if cmd.field == command.C_STORE_RQ:
            limit, budget = object_budget(limits, cmd.text(command.AFFECTED_SOP_CLASS))
            return Spool(self.link.spool_dir, limits.spool_bytes, limit, budget)
        limit = limits.max_identifier_bytes
        if cmd.field & 0x8000:  # a response, on a link we opened
            limit *= RESPONSE_IDENTIFIER_FACTOR
        return Spool(None, limits.spool_bytes, limit, "max_identifier_bytes")

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.discard()
            self.spool = None


def object_budget(limits: Limits, sop_class_uid: str) -> tuple[int, str]:
    """The largest C-STORE dataset for *sop_class_uid*, and the budget's name."""
    limit = limits.object_bytes(sop_class_uid)
    by_class = any(sop_class_uid.startswith(prefix) for prefix in limits.object_bytes_by_class)
    return limit, "object_bytes_by_class" if by_class else "max_object_bytes"


class _Batch:
    """PDUs on their way out: small fragments copied together, large ones
    referenced; sent once about SEND_BATCH bytes or IOV_MAX buffers wait."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffers: list[bytes | bytearray | memoryview] = []
        self.small = bytearray()
        self.size = 0

    def add(self, header: bytes, data: memoryview) -> None:
        if len(data) < COPY_BELOW:
            self.small += header
            self.small += data
            self.size += len(header) + len(data)
        else:
            self._seal()
            self.buffers += (header, data)
            self.size += len(header) + len(data)
        if self.size >= SEND_BATCH or len(self.buffers) >= IOV_MAX - 1:
            self.flush()

    def _seal(self) -> None:
        if self.small:
            self.buffers.append(self.small)
            self.small = bytearray()

    def flush(self) -> None:
        self._seal()
        pending = [memoryview(b) for b in self.buffers if len(b)]
        self.buffers, self.size = [], 0
        first = 0
        while first < len(pending):
            sent = self.sock.sendmsg(pending[first : first + IOV_MAX])
            while sent:
                head = pending[first]
                if sent >= len(head):
                    sent -= len(head)
                    first += 1
                else:
                    pending[first] = head[sent:]
                    sent = 0
