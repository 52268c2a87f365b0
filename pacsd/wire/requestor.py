"""Requesting associations on the lean path, and C-STORE over any link.

A C-MOVE's sub-operations are a strict request/response loop over an
association pacsd opens to the destination; C-GET's are the same loop on
the requestor's own association. Both send stored files as they lie on
disk, so :func:`send_c_store` takes the encoded dataset: bytes, or a
:class:`~pacsd.wire.link.FileRegion` read in chunks as it goes out.
"""

from __future__ import annotations

import copy
import socket
from dataclasses import dataclass

from pynetdicom._globals import APPLICATION_CONTEXT_NAME
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext

from pacsd.domain.limits import BudgetExceeded, Limits
from pacsd.wire import command, pdu
from pacsd.wire.acceptor import user_information
from pacsd.wire.link import Link, Payload, SocketReader
from pacsd.wire.pdu import ProtocolError


class AssociationRejected(Exception):
    """The peer rejected or aborted our A-ASSOCIATE-RQ."""


@dataclass(frozen=True)
class StoreResult:
    status: int
    comment: str


def associate(
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str,
    contexts: list[PresentationContext],
    timeout: float,
    scp_roles: list[str] | None = None,
    limits: Limits | None = None,
    spool_dir: str | None = None,
) -> Link:
    """Open an association proposing *contexts* (IDs are assigned here),
    asking for the SCP role for the SOP classes in *scp_roles* (C-GET: the
    peer sends us C-STOREs). What the peer sends is bounded by *limits*
    (its max_pdu_bytes announced); C-STORE datasets past spool_bytes go to
    *spool_dir* if given. Raises OSError when the peer cannot be reached,
    AssociationRejected when it says no."""
    limits = limits or Limits()
    proposed = []
    for n, cx in enumerate(contexts):
        cx = copy.copy(cx)
        cx.context_id = 2 * n + 1
        proposed.append(cx)
    rq = A_ASSOCIATE()
    rq.application_context_name = APPLICATION_CONTEXT_NAME
    rq.calling_ae_title = calling_ae
    rq.called_ae_title = called_ae
    rq.presentation_context_definition_list = proposed
    rq.user_information = user_information(limits.max_pdu_bytes)
    for sop_class in sorted(set(scp_roles or [])):
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = sop_class
        role.scu_role = False
        role.scp_role = True
        rq.user_information.append(role)
    encoded = A_ASSOCIATE_RQ()
    encoded.from_primitive(rq)
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(encoded.encode())
        reader = SocketReader(sock)
        kind, body = pdu.read(
            reader, limits.max_associate_request_bytes, "max_associate_request_bytes", limits.pdu_timeout
        )
        whole = pdu.whole(kind, body)
        if kind == pdu.ASSOCIATE_RJ:
            rj = A_ASSOCIATE_RJ()
            rj.decode(whole)
            raise AssociationRejected(f"rejected: {rj.to_primitive().reason_str}")
        if kind != pdu.ASSOCIATE_AC:
            raise AssociationRejected(f"answered with PDU type 0x{kind:02X} instead of A-ASSOCIATE-AC")
        ac = A_ASSOCIATE_AC()
        ac.decode(whole)
        answer = ac.to_primitive()
    except BaseException:
        sock.close()
        raise
    by_id = {cx.context_id: cx for cx in proposed}
    accepted = []
    for result in answer.presentation_context_definition_results_list:
        ours = by_id.get(result.context_id)
        if result.result == 0x00 and ours is not None and result.transfer_syntax:
            cx = copy.copy(ours)
            cx.transfer_syntax = [result.transfer_syntax[0]]
            accepted.append(cx)
    return Link(sock, accepted, int(answer.maximum_length_received or 0), reader, limits, spool_dir)


def release(link: Link) -> None:
    """A-RELEASE-RQ, wait for the answer, close; never raises."""
    try:
        link.sock.sendall(pdu.fixed(pdu.RELEASE_RQ))
        while True:
            kind, _ = link.read_pdu()
            if kind in (pdu.RELEASE_RP, pdu.ABORT):
                break
    except (OSError, ProtocolError, BudgetExceeded):
        pass
    finally:
        link.sock.close()


def send_c_store(
    link: Link,
    context_id: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    dataset: Payload,
    message_id: int,
    originator: tuple[str, int] | None = None,
) -> None:
    """Send one C-STORE-RQ (:func:`store_response` waits for its answer).
    *originator* is the Move Originator (AE title, Message ID) for C-MOVE
    sub-operations."""
    elements = [
        (command.AFFECTED_SOP_CLASS, "UI", sop_class_uid),
        (command.COMMAND_FIELD, "US", command.C_STORE_RQ),
        (command.MESSAGE_ID, "US", message_id),
        (command.PRIORITY, "US", 0),
        (command.DATASET_TYPE, "US", command.HAS_DATASET),
        (command.AFFECTED_SOP_INSTANCE, "UI", sop_instance_uid),
    ]
    if originator is not None:
        elements.append((command.MOVE_ORIGINATOR_AE, "AE", originator[0]))
        elements.append((command.MOVE_ORIGINATOR_ID, "US", originator[1]))
    link.send(context_id, command.encode(elements), dataset)


def store_response(link: Link, message_id: int) -> StoreResult:
    """The C-STORE-RSP to *message_id*; a C-CANCEL the peer sends meanwhile
    (C-GET, same association) is noted on the link."""
    message = link.receive()
    while message.command.field == command.C_CANCEL_RQ:  # C-GET: the peer cancels on the same link
        link.note_cancel(message)
        message = link.receive()
    response = message.command
    if response.field != command.C_STORE_RSP or response.us(command.RESPONDING_TO) != message_id:
        raise ProtocolError(f"expected the C-STORE-RSP to message {message_id}, got command 0x{response.field:04X}")
    return StoreResult(response.us(command.STATUS, 0xFFFF), response.text(command.ERROR_COMMENT))
