"""Issue 11, the query findings, against a real `pacsd serve`: bounded
identifiers (deflate bombs), private/unknown keys and group lengths,
all-wildcard person names, long key lists, and a stalled C-FIND reader
that must not pin the index's WAL."""

from __future__ import annotations

import socket
import sqlite3
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pynetdicom import AE, build_role
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from pacsd.testing import synth
from pacsd.wire import command, pdu
from pacsd.wire.command import Command
from tests.e2e.conftest import DCMTK_ENV, SCU, Server, free_port
from tests.e2e.dimse_client import request_command
from tests.e2e.test_wire import _associate_rq

FIND = str(StudyRootQueryRetrieveInformationModelFind)
MiB = 1 << 20


# -- a raw client: the identifier's bytes exactly as the test builds them ----


class RawAssociation:
    def __init__(self, server: Server, contexts: list[tuple[int, str, str]], rcvbuf: int = 0) -> None:
        self.sock = socket.socket()
        if rcvbuf:  # before connecting, so that the window stays this small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", server.port))
        self.sock.sendall(_associate_rq(contexts))
        kind, _ = self._pdu()
        assert kind == pdu.ASSOCIATE_AC

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by pacsd")
            data += chunk
        return data

    def _pdu(self) -> tuple[int, bytes]:
        kind, length = struct.unpack(">BxI", self._exact(6))
        return kind, self._exact(length)

    def send(self, context_id: int, cmd: bytes, dataset: bytes | Iterator[bytes] | None) -> None:
        self.sock.sendall(pdu.p_data_header(context_id, pdu.COMMAND | pdu.LAST, len(cmd)) + cmd)
        if dataset is None:
            return
        chunks = [dataset] if isinstance(dataset, bytes) else dataset
        pending = b""
        for chunk in chunks:
            pending += chunk
            while len(pending) > 16000:
                self.sock.sendall(pdu.p_data_header(context_id, 0, 16000) + pending[:16000])
                pending = pending[16000:]
        self.sock.sendall(pdu.p_data_header(context_id, pdu.LAST, len(pending)) + pending)

    def response(self) -> tuple[Command, bytes]:
        """The next response: its command, and its dataset (b"" if none)."""
        parts: list[bytes] = []
        data: list[bytes] = []
        cmd: Command | None = None
        while True:
            kind, body = self._pdu()
            assert kind == pdu.P_DATA, f"PDU type 0x{kind:02X}: {body!r}"
            for _, control, value in pdu.pdvs(body):
                if control & pdu.COMMAND:
                    parts.append(bytes(value))
                    if control & pdu.LAST:
                        cmd = command.decode(b"".join(parts))
                        if not cmd.has_dataset:
                            return cmd, b""
                else:
                    data.append(bytes(value))
                    if control & pdu.LAST:
                        assert cmd is not None
                        return cmd, b"".join(data)

    def close(self) -> None:
        self.sock.close()


def find_rq(message_id: int = 1) -> bytes:
    return request_command(command.C_FIND_RQ, FIND, message_id)


def echo_rq(message_id: int) -> bytes:
    return command.encode(
        [
            (command.AFFECTED_SOP_CLASS, "UI", str(Verification)),
            (command.COMMAND_FIELD, "US", command.C_ECHO_RQ),
            (command.MESSAGE_ID, "US", message_id),
            (command.DATASET_TYPE, "US", command.NO_DATASET),
        ]
    )


def explicit(group: int, element: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element."""
    if vr in ("OB", "OW", "SQ", "UN", "UT", "UC", "UR"):
        return struct.pack("<HH2s2xI", group, element, vr.encode(), len(value)) + value
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


def deflate_bomb(zeros: int) -> Iterator[bytes]:
    """A STUDY-level identifier with a private OB element of *zeros* zero
    bytes, raw-deflated as it is produced (never held whole)."""
    head = explicit(0x0008, 0x0052, "CS", b"STUDY ") + explicit(0x0009, 0x0010, "LO", b"ACME")
    head += struct.pack("<HH2s2xI", 0x0009, 0x1001, b"OB", zeros)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    yield deflater.compress(head)
    block = bytes(MiB)
    for _ in range(zeros // MiB):
        yield deflater.compress(block)
    yield deflater.compress(explicit(0x0020, 0x000D, "UI", b"")) + deflater.flush()


def echo_meanwhile(server: Server, stop: threading.Event, results: list[int]) -> threading.Thread:
    """DCMTK echoscu, again and again until *stop*: return codes in *results*."""

    def run() -> None:
        while not stop.is_set():
            cmd = ["/usr/bin/echoscu", "-to", "10", "-aec", server.ae_title, "127.0.0.1", str(server.port)]
            results.append(subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, timeout=60).returncode)
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- finding 1 (identifier side): deflate bombs ----------------------------------


def test_deflated_identifier_bomb_is_refused_within_its_budget(server: Server) -> None:
    SCU(server).store(*synth.series(2, pixel_bytes=16))
    before = server.peak_rss()
    stop, echoes = threading.Event(), list[int]()
    echoing = echo_meanwhile(server, stop, echoes)
    raw = RawAssociation(
        server, [(1, FIND, DeflatedExplicitVRLittleEndian), (3, str(Verification), ExplicitVRLittleEndian)]
    )
    try:
        start = time.monotonic()
        raw.send(1, find_rq(), deflate_bomb(256 * MiB))  # ~250 KB on the wire
        cmd, _ = raw.response()
        elapsed = time.monotonic() - start
        assert cmd.us(command.STATUS) == 0xA900
        assert "max_identifier_bytes" in cmd.text(command.ERROR_COMMENT)
        # The association carries on: a C-ECHO and a (deflated) C-FIND on it are answered.
        raw.send(3, echo_rq(2), None)
        assert raw.response()[0].us(command.STATUS) == 0x0000
        query = explicit(0x0008, 0x0052, "CS", b"STUDY ") + explicit(0x0020, 0x000D, "UI", b"")
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw.send(1, find_rq(3), deflater.compress(query) + deflater.flush())
        statuses = []
        while True:
            cmd, _ = raw.response()
            statuses.append(cmd.us(command.STATUS))
            if statuses[-1] != 0xFF00:
                break
        assert statuses == [0xFF00, 0x0000]  # the one study stored
    finally:
        raw.close()
        stop.set()
        echoing.join(timeout=60)
    assert elapsed < 10, f"answered after {elapsed:.1f} s"
    # Inflating 256 MiB took ~1 GB before; now at most max_identifier_bytes (1 MiB) is produced.
    growth = server.peak_rss() - before
    assert growth < 32 * MiB, f"peak RSS grew by {growth / MiB:.0f} MiB"
    [event] = server.events("budget_exceeded")
    assert event["budget"] == "max_identifier_bytes" and event["calling_ae"] == "RAW"
    assert "inflates to more than" in event["reason"]
    assert echoes and all(rc == 0 for rc in echoes), echoes


# -- finding 6: private tags, group lengths, unknown tags ---------------------


def test_private_group_length_and_unknown_keys_are_answered_with_matches(server: Server) -> None:
    stored = synth.series(1, pixel_bytes=16)
    SCU(server).store(*stored)
    # Exactly the review's reproduction, plus an unknown public tag.
    cmd = ["/usr/bin/findscu", "-v", "-S", "-aec", server.ae_title, "-X", "-od", str(server.workdir)]
    for key in ("QueryRetrieveLevel=STUDY", "StudyInstanceUID", "0009,0010=ACME", "0009,1001", "0010,0000",
                "0008,9999", "PatientID"):  # fmt: skip
        cmd += ["-k", key]
    result = subprocess.run([*cmd, "127.0.0.1", str(server.port)], env=DCMTK_ENV, capture_output=True, timeout=60)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    assert "0xc000" not in output.lower() and "KeyError" not in output
    [response] = [pydicom.dcmread(p) for p in sorted(server.workdir.glob("rsp*.dcm"))]
    assert response.StudyInstanceUID == stored[0].StudyInstanceUID
    assert response[0x0009, 0x0010].value == "ACME"  # the private creator, so the block stays readable
    assert not response[0x0009, 0x1001].value  # private key: returned empty
    assert not response[0x0008, 0x9999].value  # unknown key: returned empty
    assert (0x0010, 0x0000) not in response  # group length: ignored
    [find] = server.events("find")
    assert find["matches"] == 1
    server.echoscu()


def test_private_key_with_a_value_takes_no_part_in_matching(server: Server) -> None:
    SCU(server).store(*synth.series(1, pixel_bytes=16))
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    block = query.private_block(0x0009, "ACME", create=True)
    block.add_new(0x01, "LO", "anything")
    query.add_new(0x00100000, "UL", 8)
    statuses = find_statuses(server, query)
    assert statuses == [0xFF00, 0x0000]


def find_statuses(server: Server, query: Dataset, abstract: str = FIND) -> list[int]:
    ae = AE(ae_title="PYFIND")
    ae.add_requested_context(abstract)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        return [int(status.Status) for status, _ in assoc.send_c_find(query, abstract)]
    finally:
        assoc.release()


# -- finding 10: all-wildcard person names ---------------------------------------


@pytest.mark.parametrize("name", ["*^", "*^^^", "^", "=", "^^=^", "*^*", "*=*", " * ^ "])
def test_all_wildcard_person_names_are_universal_matching(server: Server, name: str) -> None:
    SCU(server).store(*synth.series(1, patient_id="P1", patient_name="Doe^John", pixel_bytes=16))
    SCU(server).store(*synth.series(1, patient_id="P2", patient_name="Roe", pixel_bytes=16))
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = name
    query.PatientID = ""
    statuses = find_statuses(server, query, str(PatientRootQueryRetrieveInformationModelFind))
    assert statuses == [0xFF00, 0xFF00, 0x0000], name
    assert not server.events("find_failed")


# -- finding 12: long key lists --------------------------------------------------


def short_uids(count: int) -> list[str]:
    """*count* distinct, short UIDs (so 40 000 of them fit in 1 MiB)."""
    return [f"1.2.3.{n}" for n in range(1, count + 1)]


@pytest.fixture
def lists_server(tmp_path: Path) -> Iterator[tuple[Server, list[Dataset]]]:
    """Default max_query_values (10 000); a move destination that is never
    contacted (a refused identifier is checked before any association)."""
    toml = f'[remotes.DEST]\nae_title = "DEST"\nhost = "127.0.0.1"\nport = {free_port()}\n'
    server = Server(tmp_path, extra_toml=toml).start()
    try:
        stored = synth.series(3, pixel_bytes=16, AccessionNumber="ACC-1999")
        SCU(server).store(*stored)
        yield server, stored
    finally:
        server.stop()


def image_query(stored: list[Dataset], sop_uids: list[str]) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = stored[0].StudyInstanceUID
    query.SeriesInstanceUID = stored[0].SeriesInstanceUID
    query.SOPInstanceUID = sop_uids
    return query


def test_find_with_2000_accession_numbers_answers_its_matches(lists_server: tuple[Server, list[Dataset]]) -> None:
    server, stored = lists_server
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.AccessionNumber = [f"ACC-{n}" for n in range(2000)] + ["NOPE*"]  # exact values and a wildcard
    query.StudyInstanceUID = ""
    assert find_statuses(server, query) == [0xFF00, 0x0000]  # ACC-1999: expression tree too large before
    assert not server.events("find_failed")


def test_list_over_max_query_values_is_refused_with_a900_and_the_association_goes_on(
    lists_server: tuple[Server, list[Dataset]],
) -> None:
    server, stored = lists_server
    uids = [*short_uids(40_000 - len(stored)), *(str(ds.SOPInstanceUID) for ds in stored)]
    query = image_query(stored, uids)
    ae = AE(ae_title="LISTSCU")
    ae.acse_timeout = ae.dimse_timeout = 30
    for abstract in (FIND, StudyRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelGet):
        ae.add_requested_context(abstract)
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(Verification)
    role = build_role(CTImageStorage, scp_role=True)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title, ext_neg=[role])
    assert assoc.is_established
    try:
        answers = {
            "find": list(assoc.send_c_find(query, FIND)),
            "move": list(assoc.send_c_move(query, "DEST", StudyRootQueryRetrieveInformationModelMove)),
            "get": list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)),
        }
        for name, responses in answers.items():
            [(status, _)] = responses
            assert status.Status == 0xA900, name
            assert "SOPInstanceUID lists 40000 values" in status.ErrorComment, name
            assert "max_query_values" in status.ErrorComment, name
            assert assoc.is_established, name  # not aborted
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    events = server.events("budget_exceeded")
    assert len(events) == 3 and all(e["budget"] == "max_query_values" for e in events)
    assert events[0]["calling_ae"] == "LISTSCU"  # C-FIND is wired with the session's fields
    assert not server.events("association_aborting")
    server.echoscu()


def test_find_of_40000_uids_is_answered_when_the_budget_allows_it(tmp_path: Path) -> None:
    toml = "[limits]\nmax_query_values = 50000\nmax_identifier_bytes = 4194304\n"
    server = Server(tmp_path, extra_toml=toml).start()
    try:
        stored = synth.series(3, pixel_bytes=16)
        SCU(server).store(*stored)
        # More than SQLite's 32 766 variables: "too many SQL variables" before.
        uids = [*short_uids(40_000 - 2), *(str(ds.SOPInstanceUID) for ds in stored[:2])]
        assert find_statuses(server, image_query(stored, uids)) == [0xFF00, 0xFF00, 0x0000]
        assert not server.events("find_failed")
    finally:
        server.stop()


# -- finding 7: a stalled C-FIND reader does not pin the WAL ---------------------

WAL_BOUND = 16 * MiB  # grew from 4.2 to 69.6 MB in the review; a checkpointed WAL stays near 4 MB


def write_series(out: Path, count: int, **kwargs: object) -> tuple[list[Path], Dataset]:
    """*count* objects of one new series as files; the paths and the first."""
    out.mkdir()
    objects = synth.series(count, **kwargs)
    return [synth.write(ds, out / f"{n:05}.dcm") for n, ds in enumerate(objects)], objects[0]


def test_stalled_find_reader_does_not_pin_the_wal(server: Server, tmp_path: Path) -> None:
    # Long descriptions (pacsd stores them as sent) make each response ~2 KiB,
    # so 3000 of them overflow the socket buffers (~3 MB on loopback).
    first_files, first = write_series(
        tmp_path / "first", 3000, pixel_bytes=16, StudyDescription="S" * 1000, SeriesDescription="D" * 1000
    )
    server.storescu(*first_files)
    # An IMAGE-level C-FIND matching all 3000, from a client that never reads
    # (a 4 KiB receive window): pacsd blocks in send() after some responses.
    keys = explicit(0x0008, 0x0018, "UI", b"") + explicit(0x0008, 0x0052, "CS", b"IMAGE ")
    keys += explicit(0x0008, 0x1030, "LO", b"") + explicit(0x0008, 0x103E, "LO", b"")
    study, series = (str(first.StudyInstanceUID).encode(), str(first.SeriesInstanceUID).encode())
    keys += explicit(0x0020, 0x000D, "UI", study + b"\0" * (len(study) % 2))
    keys += explicit(0x0020, 0x000E, "UI", series + b"\0" * (len(series) % 2))
    more, _ = write_series(tmp_path / "more", 2000, pixel_bytes=8192)  # a ~8 KiB write-ahead copy each
    stalled = RawAssociation(server, [(1, FIND, ExplicitVRLittleEndian)], rcvbuf=4096)
    try:
        stalled.send(1, find_rq(), keys)
        time.sleep(1.0)
        assert not server.events("find"), "the C-FIND finished: the test's reader did not stall it"
        wal = server.data_dir / "index.sqlite-wal"
        biggest = 0
        for batch in range(0, len(more), 500):
            server.storescu(*more[batch : batch + 500])
            biggest = max(biggest, wal.stat().st_size)
            server.echoscu()  # served throughout
        assert biggest < WAL_BOUND, f"WAL reached {biggest / MiB:.1f} MiB"
        # Nothing holds a snapshot: a checkpoint copies every frame back.
        with sqlite3.connect(server.data_dir / "index.sqlite", timeout=10) as db:
            busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, frames) == (0, done), (busy, frames, done)
        assert not server.events("find"), "no longer stalled"
    finally:
        stalled.close()
    assert server.stats()["instances"] == 5000
