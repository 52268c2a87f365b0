"""pacsd's upper layer: command sets byte for byte as pynetdicom encodes
them, PDU framing, and a running server facing broken peers."""

from __future__ import annotations

import socket
import struct

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode as pynetdicom_encode

from pacsd.wire import command, pdu
from pacsd.wire.pdu import ProtocolError
from tests.e2e.conftest import Server

CT = "1.2.840.10008.5.1.4.1.1.2"


def pynetdicom_command(**values: object) -> bytes:
    """What pynetdicom puts on the wire for these command elements."""
    ds = Dataset()
    ds.CommandGroupLength = 0
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    body = pynetdicom_encode(ds, True, True)
    assert body is not None
    ds.CommandGroupLength = len(body) - 12
    encoded = pynetdicom_encode(ds, True, True)
    assert encoded is not None
    return encoded


def test_c_store_request_as_pynetdicom_encodes_it() -> None:
    ours = command.encode(
        [
            (command.AFFECTED_SOP_CLASS, "UI", CT),
            (command.COMMAND_FIELD, "US", command.C_STORE_RQ),
            (command.MESSAGE_ID, "US", 7),
            (command.PRIORITY, "US", 0),
            (command.DATASET_TYPE, "US", command.HAS_DATASET),
            (command.AFFECTED_SOP_INSTANCE, "UI", "2.25.1234567"),
            (command.MOVE_ORIGINATOR_AE, "AE", "RETRIEVER"),
            (command.MOVE_ORIGINATOR_ID, "US", 3),
        ]
    )
    assert ours == pynetdicom_command(
        AffectedSOPClassUID=CT, CommandField=1, MessageID=7, Priority=0, CommandDataSetType=0,
        AffectedSOPInstanceUID="2.25.1234567", MoveOriginatorApplicationEntityTitle="RETRIEVER",
        MoveOriginatorMessageID=3,
    )  # fmt: skip


def test_response_answers_its_request() -> None:
    request = command.decode(
        command.encode(
            [
                (command.AFFECTED_SOP_CLASS, "UI", CT),
                (command.COMMAND_FIELD, "US", command.C_STORE_RQ),
                (command.MESSAGE_ID, "US", 9),
                (command.DATASET_TYPE, "US", command.HAS_DATASET),
                (command.AFFECTED_SOP_INSTANCE, "UI", "1.2.3"),
            ]
        )
    )
    assert request.field == command.C_STORE_RQ and request.has_dataset
    assert request.text(command.AFFECTED_SOP_INSTANCE) == "1.2.3"  # pad byte stripped
    comment = "study 1.2.3 belongs to another patient"  # odd length: padded
    ours = command.response(request, command.C_STORE_RSP, 0xC010, comment)
    assert ours == pynetdicom_command(
        AffectedSOPClassUID=CT, CommandField=0x8001, MessageIDBeingRespondedTo=9, CommandDataSetType=0x0101,
        Status=0xC010, ErrorComment=comment, AffectedSOPInstanceUID="1.2.3",
    )  # fmt: skip
    assert not command.decode(ours).has_dataset


def test_non_ascii_comment_is_replaced_not_fatal() -> None:
    request = command.decode(command.encode([(command.COMMAND_FIELD, "US", command.C_ECHO_RQ)]))
    encoded = command.response(request, command.C_ECHO_RSP, 0xC000, "Müller\\x")
    assert command.decode(encoded).text(command.ERROR_COMMENT) == "M?ller/x"


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x01\x04\x00\x00\x00",  # element header promising more than there is
        struct.pack("<HHI", 0x0008, 0x0100, 2) + b"\x01\x00",  # not group 0000
        struct.pack("<HHI", 0x0000, 0x0110, 2) + b"\x01\x00",  # no Command Field
        b"\x00\x00",  # truncated
    ],
)
def test_malformed_command_sets_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        command.decode(data)


def test_pdvs_split_and_checked() -> None:
    body = pdu.p_data_header(1, pdu.COMMAND | pdu.LAST, 3)[6:] + b"abc" + pdu.p_data_header(3, 0, 1)[6:] + b"z"
    assert [(cx, ctl, bytes(d)) for cx, ctl, d in pdu.pdvs(body)] == [(1, 3, b"abc"), (3, 0, b"z")]
    with pytest.raises(ProtocolError):
        list(pdu.pdvs(body[:-1]))  # last item cut short


def test_fragments_fit_the_peer_maximum() -> None:
    assert pdu.fragment_size(16384) == 16378
    assert pdu.fragment_size(0) == pdu.MAX_PDU - 6  # 0: no limit; ours still applies


# -- a running server facing broken peers ------------------------------------


def _raw(server: Server, payload: bytes) -> bytes:
    """Send *payload* on a fresh connection; what came back before close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _associate_rq(contexts: list[tuple[int, str, str]]) -> bytes:
    """A minimal A-ASSOCIATE-RQ built by hand (PS3.8 9.3.2)."""

    def item(kind: int, value: bytes) -> bytes:
        return struct.pack(">BxH", kind, len(value)) + value

    variable = item(0x10, b"1.2.840.10008.3.1.1.1")
    for cx_id, abstract, syntax in contexts:
        variable += item(0x20, struct.pack(">B3x", cx_id) + item(0x30, abstract.encode()) + item(0x40, syntax.encode()))
    variable += item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.3.4"))
    body = struct.pack(">HH", 1, 0) + b"PACSD".ljust(16) + b"RAW".ljust(16) + bytes(32) + variable
    return struct.pack(">BxI", pdu.ASSOCIATE_RQ, len(body)) + body


def test_garbage_first_pdu_is_answered_and_server_keeps_serving(server: Server) -> None:
    # Not a PDU type at all: A-ABORT, service provider, unrecognized PDU.
    assert _raw(server, b"GET / HTTP/1.1\r\n\r\n") == pdu.abort(2, 1)
    # An A-ASSOCIATE-RQ of absurd length is never read: rejected permanently, local limit exceeded.
    assert _raw(server, b"\x01\x00\xff\xff\xff\xff") == pdu.fixed(pdu.ASSOCIATE_RJ, 1, 3, 2)
    server.echoscu()
    assert server.events("association_rejected")
    assert server.events("budget_exceeded")[0]["budget"] == "max_associate_request_bytes"


def test_pdv_on_a_context_never_accepted_aborts_that_association(server: Server) -> None:
    rq = _associate_rq([(1, "1.2.840.10008.1.1", "1.2.840.10008.1.2")])
    stray = pdu.p_data_header(7, pdu.COMMAND | pdu.LAST, 2) + b"\0\0"
    answer = _raw(server, rq + stray)
    assert answer[0] == pdu.ASSOCIATE_AC
    assert answer.endswith(pdu.abort(2, 6))  # service provider: invalid PDU parameter value
    [aborting] = server.events("association_aborting")
    assert "context 7" in aborting["reason"]
    server.echoscu()


def test_truncated_store_is_not_stored(server: Server) -> None:
    rq = _associate_rq([(1, CT, "1.2.840.10008.1.2")])
    cmd = command.encode(
        [
            (command.AFFECTED_SOP_CLASS, "UI", CT),
            (command.COMMAND_FIELD, "US", command.C_STORE_RQ),
            (command.MESSAGE_ID, "US", 1),
            (command.DATASET_TYPE, "US", command.HAS_DATASET),
            (command.AFFECTED_SOP_INSTANCE, "UI", "1.2.3"),
        ]
    )
    half = pdu.p_data_header(1, pdu.COMMAND | pdu.LAST, len(cmd)) + cmd + pdu.p_data_header(1, 0, 1000) + b"x" * 10
    _raw(server, rq + half)  # connection closes inside the dataset PDU
    assert server.stats()["instances"] == 0
    assert server.temp_files() == []
    server.echoscu()


def test_request_on_a_context_of_another_sop_class_is_refused_with_0122(server: Server) -> None:
    # A C-FIND sent on the context accepted for CT Image Storage.
    rq = _associate_rq([(1, CT, "1.2.840.10008.1.2")])
    cmd = command.encode(
        [
            (command.AFFECTED_SOP_CLASS, "UI", "1.2.840.10008.5.1.4.1.2.2.1"),
            (command.COMMAND_FIELD, "US", command.C_FIND_RQ),
            (command.MESSAGE_ID, "US", 1),
            (command.DATASET_TYPE, "US", command.HAS_DATASET),
        ]
    )
    identifier = b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "
    find = pdu.p_data_header(1, pdu.COMMAND | pdu.LAST, len(cmd)) + cmd
    find += pdu.p_data_header(1, pdu.LAST, len(identifier)) + identifier
    answer = _raw(server, rq + find)
    # A C-FIND-RSP whose Status (0000,0900) is 0x0122 SOP Class not supported.
    assert struct.pack("<HHIH", 0x0000, 0x0100, 2, command.C_FIND_RSP) in answer
    assert struct.pack("<HHIH", 0x0000, 0x0900, 2, 0x0122) in answer
    [refused] = server.events("request_refused")
    assert "accepted for CT Image Storage" in refused["reason"]
    server.echoscu()
