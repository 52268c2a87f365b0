"""An established association: DIMSE messages in and out over one socket.

Used by both sides: the acceptor serving a peer's requests and the
requestor sending C-STOREs (retrieve sub-operations). Everything happens
in the calling thread; there is no queue between the socket and the
caller, so a response is on the wire as soon as it is written.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from pynetdicom.presentation import PresentationContext

from pacsd.wire import command, pdu
from pacsd.wire.command import Command
from pacsd.wire.pdu import ProtocolError

READ_CHUNK = 1 << 18
IOV_MAX = 512  # buffers per sendmsg; Linux allows 1024


class Aborted(Exception):
    """The peer sent A-ABORT."""


class Released(Exception):
    """The peer released the association (we have answered A-RELEASE-RP)."""


# What ends a link mid-operation; adapters let these through to the acceptor.
LINK_ENDED = (Released, Aborted, ProtocolError, OSError)


@dataclass(frozen=True)
class Message:
    context: PresentationContext
    command: Command
    dataset: bytes | None  # encoded in the context's transfer syntax


class SocketReader:
    """Buffered reads of exact sizes, able to say without blocking whether
    anything has arrived (a BufferedReader cannot)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(max(size - len(self.buffer), READ_CHUNK))
            if not chunk:
                break
            self.buffer += chunk
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

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
    ) -> None:
        self.sock = sock
        self.contexts = {int(cx.context_id or 0): cx for cx in contexts}
        self.fragment = pdu.fragment_size(peer_max_pdu)
        self._reader = reader or SocketReader(sock)
        # Message IDs the peer has cancelled (C-CANCEL-RQ) while we work.
        self.cancels: set[int] = set()

    # -- receiving -------------------------------------------------------

    def receive(self) -> Message:
        """The next complete message; raises Released, Aborted or
        ProtocolError (the caller aborts the association on the last)."""
        command_parts: list[bytes] = []
        data_parts: list[memoryview] = []
        cmd: Command | None = None
        context_id = 0
        while True:
            kind, body = pdu.read(self._reader)
            if kind == pdu.RELEASE_RQ:
                self.sock.sendall(pdu.fixed(pdu.RELEASE_RP))
                raise Released
            if kind == pdu.ABORT:
                raise Aborted
            if kind != pdu.P_DATA:
                raise ProtocolError(f"unexpected PDU type 0x{kind:02X} on an established association")
            done = False
            for cx, control, data in pdu.pdvs(body):
                if done:
                    raise ProtocolError("PDV after the end of a message (asynchronous operations were not negotiated)")
                if cx not in self.contexts:
                    raise ProtocolError(f"PDV on presentation context {cx}, which was not accepted")
                if control & pdu.COMMAND:
                    if cmd is not None:
                        raise ProtocolError("command fragment after the end of the command")
                    command_parts.append(bytes(data))
                    if control & pdu.LAST:
                        cmd = command.decode(b"".join(command_parts))
                        context_id = cx
                        done = not cmd.has_dataset
                else:
                    if cmd is None or cx != context_id:
                        raise ProtocolError("dataset fragment without its command")
                    data_parts.append(data)
                    done = bool(control & pdu.LAST)
            if done:
                assert cmd is not None
                dataset = b"".join(data_parts) if cmd.has_dataset else None
                return Message(self.contexts[context_id], cmd, dataset)

    def read_pdu(self) -> tuple[int, bytes]:
        return pdu.read(self._reader)

    def note_cancel(self, message: Message) -> None:
        """Take *message*, which arrived during an operation: a C-CANCEL is
        noted; anything else breaks the protocol (we negotiate no
        asynchronous operations)."""
        if message.command.field != command.C_CANCEL_RQ:
            raise ProtocolError(f"command 0x{message.command.field:04X} arrived while an operation was in progress")
        self.cancels.add(message.command.us(command.RESPONDING_TO))

    def pending(self) -> bool:
        """Whether the peer has sent anything we have not read (a C-CANCEL
        during a long operation); never blocks."""
        return self._reader.pending()

    # -- sending ---------------------------------------------------------

    def send(self, context_id: int, cmd: bytes, dataset: bytes | memoryview | None = None) -> None:
        """One message: the command in one PDV, the dataset in PDVs that
        fit the peer's maximum PDU, written without copying the dataset."""
        buffers: list[bytes | memoryview] = [pdu.p_data_header(context_id, pdu.COMMAND | pdu.LAST, len(cmd)), cmd]
        if dataset is not None:
            view = memoryview(dataset)
            step = self.fragment
            for start in range(0, max(len(view), 1), step):
                piece = view[start : start + step]
                last = pdu.LAST if start + step >= len(view) else 0
                buffers.append(pdu.p_data_header(context_id, last, len(piece)))
                buffers.append(piece)
        self._send_buffers(buffers)

    def _send_buffers(self, buffers: list[bytes | memoryview]) -> None:
        pending = [memoryview(b) for b in buffers if len(b)]
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

    def abort(self) -> None:
        """A-ABORT (service user) and close; never raises."""
        try:
            self.sock.sendall(pdu.fixed(pdu.ABORT, 0, 0, 0))
        except OSError:
            pass
