"""A lean DICOM client for tests that need exact control of the messages:
pacsd's own requestor (pacsd.wire), talking to a real pacsd over TCP.

pynetdicom and DCMTK choose presentation contexts, Message IDs and roles
for us; the cases here need a C-STORE on a Verification context, a C-GET
without role negotiation, or tens of thousands of sub-operations at wire
speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext, build_context

from pacsd.wire import command, dataset, requestor
from pacsd.wire.link import Link


def associate(server_port: int, contexts: list[PresentationContext], scp_roles: list[str] | None = None) -> Link:
    return requestor.associate("127.0.0.1", server_port, "PACSD", "LEANSCU", contexts, 30.0, scp_roles)


def context_id(link: Link, abstract_syntax: str) -> int:
    return next(cx_id for cx_id, cx in link.contexts.items() if str(cx.abstract_syntax) == abstract_syntax)


def store_all(port: int, sop_class: str, items: Sequence[tuple[str, bytes]], associations: int = 4) -> list[int]:
    """C-STORE every (SOP Instance UID, Explicit VR LE dataset) over
    *associations* concurrent associations; the statuses, in order."""
    statuses = [0xFFFF] * len(items)

    def send(share: range) -> None:
        link = associate(port, [build_context(sop_class, [ExplicitVRLittleEndian])])
        cx = context_id(link, sop_class)
        try:
            for n in share:
                sop_uid, data = items[n]
                requestor.send_c_store(link, cx, sop_class, sop_uid, data, n % 0xFFFF + 1)
                statuses[n] = requestor.store_response(link, n % 0xFFFF + 1).status
        finally:
            requestor.release(link)

    threads = [threading.Thread(target=send, args=(range(k, len(items), associations),)) for k in range(associations)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def request_command(field: int, sop_class: str, message_id: int = 1) -> bytes:
    """The command set of a C-FIND/C-MOVE/C-GET request with an identifier."""
    return command.encode(
        [
            (command.AFFECTED_SOP_CLASS, "UI", sop_class),
            (command.COMMAND_FIELD, "US", field),
            (command.MESSAGE_ID, "US", message_id),
            (command.PRIORITY, "US", 0),
            (command.DATASET_TYPE, "US", command.HAS_DATASET),
        ]
    )


@dataclass
class GetResult:
    status: int = -1
    comment: str = ""
    stored: list[str] = field(default_factory=list)  # SOP Instance UIDs, in arrival order
    message_ids: list[int] = field(default_factory=list)  # of the C-STORE-RQs
    pendings: list[tuple[int, int, int, int]] = field(default_factory=list)  # remaining, completed, failed, warning
    final_counts: tuple[int, int, int] = (0, 0, 0)  # completed, failed, warning
    failed_list: list[str] = field(default_factory=list)


def c_get(
    link: Link,
    get_context: int,
    identifier: Dataset,
    on_store: Callable[[bytes], None] | None = None,
) -> GetResult:
    """Send a C-GET-RQ; answer every C-STORE-RQ it brings with success."""
    rq = request_command(command.C_GET_RQ, str(link.contexts[get_context].abstract_syntax), 7)
    link.send(get_context, rq, dataset.encode(identifier, ExplicitVRLittleEndian))
    result = GetResult()
    while True:
        message = link.receive()
        cmd = message.command
        if cmd.field == command.C_STORE_RQ:
            result.stored.append(cmd.text(command.AFFECTED_SOP_INSTANCE))
            result.message_ids.append(cmd.us(command.MESSAGE_ID))
            if on_store is not None and isinstance(message.dataset, bytes):
                on_store(message.dataset)
            response = command.response(cmd, command.C_STORE_RSP, 0)
            link.send(int(message.context.context_id or 0), response)
            continue
        assert cmd.field == command.C_GET_RSP, hex(cmd.field)
        status = cmd.us(command.STATUS)
        counts = [cmd.us(e) for e in (command.REMAINING, command.COMPLETED, command.FAILED, command.WARNING)]
        if status == 0xFF00:
            result.pendings.append((counts[0], counts[1], counts[2], counts[3]))
            continue
        result.status = status
        result.comment = cmd.text(command.ERROR_COMMENT)
        result.final_counts = (counts[1], counts[2], counts[3])
        if isinstance(message.dataset, bytes) and message.dataset:
            ds = dataset.decode(message.dataset, ExplicitVRLittleEndian)
            failed = ds.get("FailedSOPInstanceUIDList", [])
            result.failed_list = [failed] if isinstance(failed, str) else list(failed)
        return result
