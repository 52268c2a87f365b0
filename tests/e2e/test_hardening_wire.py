"""Issue 11, the wire: budgets on what arrives, deadlines, connection
slots, the A-ASSOCIATE-AC cache, sending to tiny PDUs, PS3.8 answers.

Every case runs against a real ``pacsd serve`` with raw sockets (the
peer's bytes are the point), asserts what the peer sees (A-ASSOCIATE-RJ or
A-ABORT fields), the log event, where memory matters the server's peak
RSS, and that /usr/bin/echoscu is served meanwhile.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacsd.domain.part10 import stored_dataset
from pacsd.testing import synth
from pacsd.wire import command, pdu
from pacsd.wire.link import FileRegion, Link
from tests.e2e.conftest import DCMTK_ENV, SCU, Server
from tests.e2e.dimse_client import request_command

VERIFICATION = "1.2.840.10008.1.1"
GET_STUDY = "1.2.840.10008.5.1.4.1.2.2.3"
FIND_STUDY = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT = str(ImplicitVRLittleEndian)
MiB = 1 << 20

ABORT_PROVIDER = pdu.abort(2, 0)  # service provider, reason not specified: every budget


# -- a peer built by hand ------------------------------------------------------


def item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(value)) + value


def associate_rq(
    contexts: list[tuple[int, str, list[str]]],
    *,
    called: str = "PACSD",
    calling: str = "RAW",
    version: int = 1,
    application_context: str = "1.2.840.10008.3.1.1.1",
    max_pdu: int = 16384,
    scp_roles: tuple[str, ...] = (),
) -> bytes:
    """An A-ASSOCIATE-RQ (PS3.8 9.3.2), every field chosen by the test."""
    variable = item(0x10, application_context.encode())
    for cx_id, abstract, syntaxes in contexts:
        sub = item(0x30, abstract.encode()) + b"".join(item(0x40, ts.encode()) for ts in syntaxes)
        variable += item(0x20, struct.pack(">B3x", cx_id) + sub)
    user = item(0x51, struct.pack(">I", max_pdu)) + item(0x52, b"1.2.3.4")
    for sop_class in scp_roles:  # we take the SCP role (C-GET), not the SCU role
        user += item(0x54, struct.pack(">H", len(sop_class)) + sop_class.encode() + b"\x00\x01")
    variable += item(0x50, user)
    body = struct.pack(">HH", version, 0) + called.encode().ljust(16) + calling.encode().ljust(16) + bytes(32)
    return struct.pack(">BxI", pdu.ASSOCIATE_RQ, len(body + variable)) + body + variable


ECHO_RQ = associate_rq([(1, VERIFICATION, [IMPLICIT])])


class Peer:
    """One raw TCP connection to the server."""

    def __init__(self, server: Server, timeout: float = 15) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.buffer = bytearray()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def pdu(self) -> tuple[int, bytes]:
        """The next PDU; (0, b'') if the connection closed instead."""
        if not self._fill(6):
            return 0, b""
        kind, length = struct.unpack_from(">BxI", self.buffer)
        assert self._fill(6 + length), "connection closed inside a PDU"
        body = bytes(self.buffer[6 : 6 + length])
        del self.buffer[: 6 + length]
        return kind, body

    def answer(self) -> bytes:
        """The next PDU as it was on the wire (b'' if closed)."""
        kind, body = self.pdu()
        return pdu.whole(kind, body) if kind else b""

    def closed(self) -> bool:
        return self.pdu() == (0, b"")

    def associate(self, rq: bytes = ECHO_RQ) -> bytes:
        """Send *rq*, expect A-ASSOCIATE-AC; its body."""
        self.send(rq)
        kind, body = self.pdu()
        assert kind == pdu.ASSOCIATE_AC, (kind, body[:16])
        return body


def max_length_announced(ac_body: bytes) -> int:
    at = ac_body.index(b"\x51\x00\x00\x04")
    return int(struct.unpack_from(">I", ac_body, at + 4)[0])


def pdata(context_id: int, control: int, data: bytes) -> bytes:
    return pdu.p_data_header(context_id, control, len(data)) + data


def echo_command() -> bytes:
    return command.encode(
        [
            (command.AFFECTED_SOP_CLASS, "UI", VERIFICATION),
            (command.COMMAND_FIELD, "US", command.C_ECHO_RQ),
            (command.MESSAGE_ID, "US", 1),
            (command.DATASET_TYPE, "US", command.NO_DATASET),
        ]
    )


def store_command(sop_instance: str = "1.2.3.4") -> bytes:
    return command.encode(
        [
            (command.AFFECTED_SOP_CLASS, "UI", str(CTImageStorage)),
            (command.COMMAND_FIELD, "US", command.C_STORE_RQ),
            (command.MESSAGE_ID, "US", 1),
            (command.PRIORITY, "US", 0),
            (command.DATASET_TYPE, "US", command.HAS_DATASET),
            (command.AFFECTED_SOP_INSTANCE, "UI", sop_instance),
        ]
    )


class Echoer:
    """/usr/bin/echoscu over and over in a thread while a test attacks."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.done = threading.Event()
        self.results: list[bool] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Echoer:
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.done.is_set():
            cmd = ["/usr/bin/echoscu", "-to", "10", "-aec", self.server.ae_title, "127.0.0.1", str(self.server.port)]
            result = subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, timeout=30)
            self.results.append(result.returncode == 0)
            time.sleep(0.1)

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join(60)
        assert self.results and all(self.results), self.results


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def start(started: list[Server], tmp_path: Path, toml: str = "") -> Server:
    server = Server(tmp_path, extra_toml=toml).start()
    started.append(server)
    return server


def budget_events(server: Server, budget: str) -> list[dict[str, object]]:
    return [e for e in server.events("budget_exceeded") if e.get("budget") == budget]


# -- 1, finding 3: budgets on what a message may cost ----------------------------


def test_announced_max_pdu_is_the_budget_and_a_larger_pdu_aborts(make_server: list[Server], tmp_path: Path) -> None:
    server = start(make_server, tmp_path, "[limits]\nmax_pdu_bytes = 65536\n")
    with Peer(server) as peer:
        assert max_length_announced(peer.associate()) == 65536
        # The header promises 1 MiB: refused before any of it is read.
        peer.send(struct.pack(">BxI", pdu.P_DATA, MiB) + b"\0" * 1000)
        assert peer.answer() == ABORT_PROVIDER
        assert peer.closed()
    [event] = budget_events(server, "max_pdu_bytes")
    assert event["calling_ae"] == "RAW" and "assoc" in event and "reason" in event
    server.echoscu()


def test_command_set_over_budget_aborts(make_server: list[Server], tmp_path: Path) -> None:
    server = start(make_server, tmp_path, "[limits]\nmax_command_bytes = 1024\n")
    with Peer(server) as peer:
        peer.associate()
        for _ in range(5):  # 5 x 300 bytes of a command that never ends
            peer.send(pdata(1, pdu.COMMAND, b"\0" * 300))
        assert peer.answer() == ABORT_PROVIDER
    assert budget_events(server, "max_command_bytes")
    server.echoscu()


def test_sixteen_mib_of_empty_fragments_cost_no_memory(make_server: list[Server], tmp_path: Path) -> None:
    # Default budgets: max_fragments = 2**20 PDVs. Before: 24 MiB of these
    # took RSS from 50 to 798 MB. Bound stated here: peak RSS grows < 32 MiB.
    server = start(make_server, tmp_path)
    server.echoscu()
    before = server.peak_rss()
    empty = struct.pack(">IBB", 2, 1, 0)  # a PDV of no data, never the last
    per_pdu = (MiB - 6) // len(empty)
    burst = pdata(1, pdu.COMMAND | pdu.LAST, store_command())
    burst += (struct.pack(">BxI", pdu.P_DATA, per_pdu * len(empty)) + empty * per_pdu) * 16
    with Echoer(server), Peer(server, timeout=60) as peer:
        peer.associate(associate_rq([(1, str(CTImageStorage), [IMPLICIT])]))
        sender = threading.Thread(target=_send_ignoring_reset, args=(peer.sock, burst), daemon=True)
        sender.start()
        assert peer.answer() == ABORT_PROVIDER
        sender.join(30)
    [event] = budget_events(server, "max_fragments")
    assert "1048576" in str(event["reason"])
    growth = server.peak_rss() - before
    assert growth < 32 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"
    assert server.temp_files() == []


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server aborted and stopped reading: expected


def test_store_over_its_object_budget_aborts_and_leaves_no_spool_file(
    make_server: list[Server], tmp_path: Path
) -> None:
    # Spooled to tmp/ past 64 KiB; refused past 256 KiB. The spool file goes.
    server = start(make_server, tmp_path, "[limits]\nspool_bytes = 65536\nmax_object_bytes = 262144\n")
    with Peer(server) as peer:
        peer.associate(associate_rq([(1, str(CTImageStorage), [IMPLICIT])]))
        peer.send(pdata(1, pdu.COMMAND | pdu.LAST, store_command()))
        for _ in range(15):  # 15 x 16000 bytes: 240 000, spooled to a file
            peer.send(pdata(1, 0, b"\x01" * 16000))
        deadline = time.monotonic() + 10
        while not server.temp_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.suffix for p in server.temp_files()] == [".spool"]
        peer.send(pdata(1, 0, b"\x01" * 30000))  # past 262 144
        assert peer.answer() == ABORT_PROVIDER
    [event] = budget_events(server, "max_object_bytes")
    assert "262144" in str(event["reason"])
    deadline = time.monotonic() + 5  # the server removes the spool file after it has aborted
    while server.temp_files() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.temp_files() == []
    assert server.stats()["instances"] == 0
    server.echoscu()


def test_object_budget_by_sop_class(make_server: list[Server], tmp_path: Path) -> None:
    toml = '[limits.object_bytes_by_class]\n"1.2.840.10008.5.1.4.1.1.2" = 4096\n'
    server = start(make_server, tmp_path, toml)
    with Peer(server) as peer:
        peer.associate(associate_rq([(1, str(CTImageStorage), [IMPLICIT])]))
        peer.send(pdata(1, pdu.COMMAND | pdu.LAST, store_command()) + pdata(1, pdu.LAST, b"\0" * 5000))
        assert peer.answer() == ABORT_PROVIDER
    assert budget_events(server, "object_bytes_by_class")
    server.echoscu()


def test_identifier_over_budget_aborts(make_server: list[Server], tmp_path: Path) -> None:
    server = start(make_server, tmp_path, "[limits]\nmax_identifier_bytes = 4096\n")
    find = request_command(command.C_FIND_RQ, FIND_STUDY)
    with Peer(server) as peer:
        peer.associate(associate_rq([(1, FIND_STUDY, [IMPLICIT])]))
        peer.send(pdata(1, pdu.COMMAND | pdu.LAST, find) + pdata(1, 0, b"\0" * 3000) + pdata(1, pdu.LAST, b"\0" * 3000))
        assert peer.answer() == ABORT_PROVIDER
    assert budget_events(server, "max_identifier_bytes")
    server.echoscu()


# -- 2, finding 2: sending to a peer that announces a 7-byte maximum PDU --------------


def test_c_get_to_a_seven_byte_max_pdu(make_server: list[Server], tmp_path: Path) -> None:
    # Before: 1 MiB at a 7-byte PDU took RSS to 848 MB. Bound stated here:
    # peak RSS grows by less than 48 MiB while it is sent.
    server = start(make_server, tmp_path)
    ds = synth.ct(patient_id="TINY", pixel_bytes=MiB)
    assert SCU(server).store(ds)[0].Status == 0
    [stored] = server.files()
    expected = stored_dataset(stored)
    before = server.peak_rss()
    rq = associate_rq(
        [(1, GET_STUDY, [IMPLICIT]), (3, str(CTImageStorage), [str(ExplicitVRLittleEndian)])],
        max_pdu=7,
        scp_roles=(str(CTImageStorage),),
        calling="TINYGET",
    )
    identifier = (
        b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "
        + struct.pack("<HHI", 0x0020, 0x000D, len(ds.StudyInstanceUID) + len(ds.StudyInstanceUID) % 2)
        + ds.StudyInstanceUID.encode()
        + b"\0" * (len(ds.StudyInstanceUID) % 2)
    )
    get = request_command(command.C_GET_RQ, GET_STUDY)
    with Echoer(server), Peer(server, timeout=60) as peer:
        peer.associate(rq)
        peer.send(pdata(1, pdu.COMMAND | pdu.LAST, get) + pdata(1, pdu.LAST, identifier))
        store_rq, dataset, largest = _receive_message(peer)
        assert largest <= 7, f"a P-DATA-TF of {largest} bytes exceeds the 7 announced"
        assert store_rq.field == command.C_STORE_RQ
        assert dataset == expected  # intact, byte for byte
        rsp = command.response(store_rq, command.C_STORE_RSP, 0)
        peer.send(pdata(3, pdu.COMMAND | pdu.LAST, rsp))
        final, _, _ = _receive_message(peer)
        assert final.field == command.C_GET_RSP and final.us(command.STATUS) == 0
        assert final.us(command.COMPLETED) == 1
    growth = server.peak_rss() - before
    assert growth < 48 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"


def _receive_message(peer: Peer) -> tuple[command.Command, bytes, int]:
    """One whole message from the server, read PDU by PDU (fast enough for
    a million PDUs): its command, dataset and the largest PDU body seen."""
    cmd_bytes, data, largest = bytearray(), bytearray(), 0
    cmd: command.Command | None = None
    buffer, at = peer.buffer, 0
    while True:
        while len(buffer) - at < 6 or len(buffer) - at < 6 + struct.unpack_from(">I", buffer, at + 2)[0]:
            del buffer[:at]
            at = 0
            chunk = peer.sock.recv(1 << 22)
            assert chunk, "connection closed"
            buffer += chunk
        kind, length = struct.unpack_from(">BxI", buffer, at)
        assert kind == pdu.P_DATA, kind
        largest = max(largest, length)
        body_end = at + 6 + length
        at += 6
        while at < body_end:
            pdv_length, _, control = struct.unpack_from(">IBB", buffer, at)
            piece = buffer[at + 6 : at + 4 + pdv_length]
            at += 4 + pdv_length
            if control & pdu.COMMAND:
                cmd_bytes += piece
                if control & pdu.LAST:
                    cmd = command.decode(bytes(cmd_bytes))
                    if not cmd.has_dataset:
                        del buffer[:at]
                        return cmd, b"", largest
            else:
                data += piece
                if control & pdu.LAST:
                    assert cmd is not None
                    del buffer[:at]
                    return cmd, bytes(data), largest


def test_file_region_is_sent_in_chunks_without_reading_it_whole(tmp_path: Path) -> None:
    # In process over a real socket pair: a 24 MiB file to a peer taking
    # 16 KiB PDUs; Python allocations while sending stay below 12 MiB.
    path = tmp_path / "big.bin"
    payload = os.urandom(24 * MiB)
    path.write_bytes(b"HEAD" + payload + b"TAIL")
    ours, theirs = socket.socketpair()
    link = Link(ours, [], 16384)
    wire_copy = tmp_path / "wire.bin"

    def read_all() -> None:  # to a file: what the peer holds must not count
        buffer = bytearray(1 << 20)
        with wire_copy.open("wb") as out:
            while n := theirs.recv_into(buffer):
                out.write(memoryview(buffer)[:n])

    reader = threading.Thread(target=read_all)
    reader.start()
    tracemalloc.start()
    try:
        link.send(1, echo_command(), FileRegion(str(path), 4, len(payload)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        ours.close()
    reader.join(30)
    theirs.close()
    assert peak < 12 * MiB, f"{peak / MiB:.1f} MiB allocated while sending"
    wire, data, at = wire_copy.read_bytes(), bytearray(), 0
    while at < len(wire):
        kind, length = struct.unpack_from(">BxI", wire, at)
        assert kind == pdu.P_DATA and length <= 16384
        pdv_length, _, control = struct.unpack_from(">IBB", wire, at + 6)
        if not control & pdu.COMMAND:
            data += wire[at + 12 : at + 10 + pdv_length]
        at += 6 + length
    assert data == payload


# -- 3, finding 4: deadlines and connection slots ------------------------------------


def _trickle(server: Server, associate_first: bool, outcome: dict[str, object]) -> None:
    """Send a PDU one byte every 0.3 s; note what came back and when."""
    begin = time.monotonic()
    with Peer(server, timeout=30) as peer:
        payload = ECHO_RQ
        if associate_first:
            peer.associate()
            payload = pdata(1, pdu.COMMAND | pdu.LAST, echo_command())
        begin = time.monotonic()
        peer.sock.settimeout(0.3)
        for byte in payload:
            try:
                answer = peer.answer()
                outcome["answer"] = answer
                break
            except TimeoutError:
                pass
            try:
                peer.send(bytes([byte]))
            except OSError:
                break
        peer.sock.settimeout(10)
        outcome.setdefault("answer", peer.answer())
        outcome["closed"] = peer.closed()
    outcome["seconds"] = time.monotonic() - begin


def test_trickling_peers_are_dropped_while_echoscu_is_served(make_server: list[Server], tmp_path: Path) -> None:
    toml = "[limits]\npdu_timeout = 2.0\nmax_connections = 6\n"
    server = Server(tmp_path, extra_toml=toml)
    server.config.write_text(server.config.read_text().replace("[server]\n", "[server]\nnetwork_timeout = 1.0\n", 1))
    make_server.append(server.start())
    outcomes: list[dict[str, object]] = [{} for _ in range(5)]
    threads = [threading.Thread(target=_trickle, args=(server, n >= 3, outcomes[n]), daemon=True) for n in range(5)]
    with Echoer(server):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    for outcome in outcomes:
        assert outcome["answer"] == ABORT_PROVIDER, outcome
        assert outcome["closed"], outcome
        assert float(str(outcome["seconds"])) < 10, outcome  # pdu_timeout 2 s, whatever the 1 s silences
    assert len(budget_events(server, "pdu_timeout")) == 5


def test_idle_connections_hold_slots_only_until_associate_timeout(make_server: list[Server], tmp_path: Path) -> None:
    server = start(make_server, tmp_path, "[limits]\nmax_connections = 3\nassociate_timeout = 1.5\n")
    idle = [Peer(server) for _ in range(3)]
    time.sleep(0.5)  # all three accepted and counted
    try:
        with Peer(server) as late:  # a fourth connection: refused at once, transient, local limit exceeded
            late.sock.settimeout(5)
            assert late.answer() == pdu.fixed(pdu.ASSOCIATE_RJ, 2, 3, 2)
            assert late.closed()
        begin = time.monotonic()
        for peer in idle:
            assert peer.answer() == ABORT_PROVIDER
            assert peer.closed()
        assert time.monotonic() - begin < 10
    finally:
        for peer in idle:
            peer.sock.close()
    assert len(budget_events(server, "associate_timeout")) == 3
    assert any("max_connections" in str(e["reason"]) for e in server.events("association_rejected"))
    server.echoscu()


def test_association_ends_at_association_timeout(make_server: list[Server], tmp_path: Path) -> None:
    server = start(make_server, tmp_path, "[limits]\nassociation_timeout = 1.5\n")
    with Peer(server) as peer:
        peer.associate()
        begin = time.monotonic()
        for _ in range(200):  # busy, never silent: the association's own deadline ends it
            peer.send(pdata(1, pdu.COMMAND | pdu.LAST, echo_command()))
            answer = peer.answer()
            if answer[:1] != bytes([pdu.P_DATA]):
                break
            time.sleep(0.1)
        assert answer == ABORT_PROVIDER
        assert time.monotonic() - begin < 10
    [event] = budget_events(server, "association_timeout")
    assert event["calling_ae"] == "RAW"
    server.echoscu()


def test_silence_is_a_network_timeout_abort(make_server: list[Server], tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.config.write_text(server.config.read_text().replace("[server]\n", "[server]\nnetwork_timeout = 1.0\n", 1))
    make_server.append(server.start())
    with Peer(server) as peer:
        peer.associate()
        assert peer.answer() == pdu.abort(2, 0)
    assert any(e["reason"] == "network timeout" for e in server.events("association_aborting"))


# -- 4, finding 13: the A-ASSOCIATE-AC cache, and oversized requests --------------------


def _large_rq(n: int, size: int) -> bytes:
    """A distinct A-ASSOCIATE-RQ of about *size* bytes: many (unacceptable)
    transfer syntaxes on one context, next to an acceptable one."""
    syntaxes = [f"1.2.826.0.1.3680043.{n}.{i}." + "9" * 30 for i in range(size // 70)]
    contexts = [(1, VERIFICATION, [IMPLICIT])]
    per = 800
    for k in range(0, len(syntaxes), per):
        contexts.append((3 + 2 * (k // per), VERIFICATION, syntaxes[k : k + per]))
    return associate_rq(contexts, calling=f"BIG{n}")


def test_offer_cache_is_bounded_by_total_bytes(make_server: list[Server], tmp_path: Path) -> None:
    # 80 distinct 100 KiB requests: 8 MB that the old cache (256 entries)
    # kept (measured: peak RSS +12 MiB for 120 of them); a 512 KiB cache
    # keeps five. Bound stated: peak RSS grows < 4 MiB.
    server = start(make_server, tmp_path, "[limits]\nassociate_cache_bytes = 524288\n")

    def associate_and_release(n: int) -> None:
        with Peer(server) as peer:
            peer.associate(_large_rq(n, 100_000))
            peer.send(pdu.fixed(pdu.RELEASE_RQ))
            assert peer.pdu()[0] == pdu.RELEASE_RP

    for n in range(8):  # warm up: whatever a first decode allocates once
        associate_and_release(1000 + n)
    before = server.peak_rss()
    for n in range(80):
        associate_and_release(n)
    growth = server.peak_rss() - before
    assert growth < 4 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"
    server.echoscu()


def test_associate_request_over_budget_is_rejected_unread(make_server: list[Server], tmp_path: Path) -> None:
    server = start(make_server, tmp_path, "[limits]\nmax_associate_request_bytes = 65536\n")
    with Peer(server) as peer:
        peer.send(_large_rq(1, 100_000))
        assert peer.answer() == pdu.fixed(pdu.ASSOCIATE_RJ, 1, 3, 2)  # permanent, local limit exceeded
        assert peer.closed()
    assert budget_events(server, "max_associate_request_bytes")
    server.echoscu()


# -- 5, finding 14: what PS3.8 says a peer sees ------------------------------------


@pytest.mark.parametrize(
    "rq, answer, words",
    [
        (associate_rq([(1, VERIFICATION, [IMPLICIT])], version=0), (1, 2, 2), "protocol version"),
        (associate_rq([(1, VERIFICATION, [IMPLICIT])], version=2), (1, 2, 2), "protocol version"),
        (
            associate_rq([(1, VERIFICATION, [IMPLICIT])], application_context="1.2.3.4"),
            (1, 1, 2),
            "application context",
        ),
        (associate_rq([(1, VERIFICATION, [IMPLICIT])], called="SOMEONE"), (1, 1, 7), "called AE title"),
        (associate_rq([]), (1, 1, 1), "no presentation context"),
        (associate_rq([(1, "1.2.3.4.5", [IMPLICIT])]), (1, 1, 1), "acceptable"),
    ],
    ids=["version-0", "version-2", "application-context", "called-ae", "no-contexts", "none-acceptable"],
)
def test_requests_we_do_not_take_are_rejected(
    make_server: list[Server], tmp_path: Path, rq: bytes, answer: tuple[int, int, int], words: str
) -> None:
    server = start(make_server, tmp_path)
    with Peer(server) as peer:
        peer.send(rq)
        assert peer.answer() == pdu.fixed(pdu.ASSOCIATE_RJ, *answer)
        assert peer.closed()
    [event] = server.events("association_rejected")
    assert words in str(event["reason"]), event
    server.echoscu()


def test_version_with_bit_zero_set_is_accepted(make_server: list[Server], tmp_path: Path) -> None:
    server = start(make_server, tmp_path)
    with Peer(server) as peer:
        peer.associate(associate_rq([(1, VERIFICATION, [IMPLICIT])], version=3))


def test_any_called_ae_with_check_called_ae_off(make_server: list[Server], tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.config.write_text(server.config.read_text().replace("[server]\n", "[server]\ncheck_called_ae = false\n"))
    make_server.append(server.start())
    with Peer(server) as peer:
        peer.associate(associate_rq([(1, VERIFICATION, [IMPLICIT])], called="ANY-SCP"))
    cmd = ["/usr/bin/echoscu", "-aec", "ANY-SCP", "127.0.0.1", str(server.port)]
    assert subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, timeout=30).returncode == 0


@pytest.mark.parametrize(
    "first, reason",
    [
        (b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00", 1),  # unrecognized PDU type
        (pdata(1, pdu.COMMAND | pdu.LAST, b"\0\0"), 2),  # P-DATA before any association: unexpected
        (struct.pack(">BxI", 1, 20) + bytes(20), 6),  # A-ASSOCIATE-RQ shorter than its fixed fields
        (ECHO_RQ[:74] + b"\x10\x00\xff\xff", 6),  # its items do not decode
    ],
    ids=["unrecognized", "unexpected", "short", "undecodable"],
)
def test_malformed_first_pdu_gets_an_abort(
    make_server: list[Server], tmp_path: Path, first: bytes, reason: int
) -> None:
    server = start(make_server, tmp_path)
    if first[0] == pdu.ASSOCIATE_RQ and len(first) > 40:  # fix up the length of the cut request
        first = first[:2] + struct.pack(">I", len(first) - 6) + first[6:]
    with Peer(server) as peer:
        peer.send(first)
        assert peer.answer() == pdu.abort(2, reason)
        assert peer.closed()
    [event] = server.events("association_rejected")
    assert event["answer"] == "A-ABORT" and event["abort_reason"] == reason
    server.echoscu()


@pytest.mark.parametrize(
    "after, reason",
    [
        (ECHO_RQ, 2),  # a second A-ASSOCIATE-RQ: unexpected
        (b"\x0a\x00\x00\x00\x00\x00", 1),  # type 0x0A: unrecognized
        (struct.pack(">BxI", pdu.P_DATA, 8) + struct.pack(">IBB", 9, 1, 3) + b"\0\0", 6),  # PDV overruns its PDU
        (struct.pack(">BxI", pdu.P_DATA, 0), 6),  # P-DATA-TF with no PDV
    ],
    ids=["unexpected", "unrecognized", "pdv-length", "empty-pdata"],
)
def test_provider_detected_errors_abort_with_source_two(
    make_server: list[Server], tmp_path: Path, after: bytes, reason: int
) -> None:
    server = start(make_server, tmp_path)
    with Peer(server) as peer:
        peer.associate()
        peer.send(after)
        assert peer.answer() == pdu.abort(2, reason)
        assert peer.closed()
    [event] = server.events("association_aborting")
    assert event["abort_reason"] == reason
    server.echoscu()
