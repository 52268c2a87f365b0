"""Issue 11, finding 9: the server's stderr is pacsd's own JSON events, one
per line, whatever bytes a peer sends.

A fuzz of everything a peer controls that reaches a log line or a library
warning: Specific Character Set values with newlines and forged JSON
events, names with the same, invalid UTF-8, ISO 2022 and terminal escape
sequences, calling AE titles with control characters, garbage PDUs. Every
line of stderr must then parse as a JSON object naming an event pacsd's
code emits, and no `stored` event may name an object that was not stored.
"""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

from pacsd.testing import synth
from pacsd.testing.raw import EXPLICIT_LE, part10, with_raw
from tests.e2e.conftest import REPO, SCU, Server

FORGED_UID = "1.2.3.999999"
FORGED = json.dumps({"event": "stored", "result": "stored", "sop_instance_uid": FORGED_UID, "level": "info"})
HOSTILE_TEXT = [
    b"\n" + FORGED.encode() + b"\n",
    b"\r\n" + FORGED.encode(),
    b"ISO_IR 100\n" + FORGED.encode(),
    b"\xff\xfe\xc3\x28\xa0\xa1 invalid utf-8",
    b"\x1b$B\x1b(B\x1b[31mred\x1b[0m\x1b]0;title\x07",
    b"\x00\x01\x02\x7f\x85\xe2\x80\xa8\xe2\x80\xa9 line separators",
    b'"}\n{"event":"stored"',
]
CHARSETS = [b"ISO_IR 192", b"ISO 2022 IR 87", b"ISO_IR 100", b"GB18030"]


def pacsd_events() -> set[str]:
    """Every event name pacsd's code logs (the first string argument of a
    logger call), read from its sources."""
    names: set[str] = set()
    call = re.compile(r"\.(?:debug|info|warning|error|exception|critical)\(\s*\"([a-z][a-z0-9_]*)\"")
    leveled = re.compile(r"\.log\(\s*[\w.]+,\s*\"([a-z][a-z0-9_]*)\"")
    for path in (REPO / "pacsd").rglob("*.py"):
        text = path.read_text()
        names.update(call.findall(text), leveled.findall(text))
    assert {"stored", "library_output", "library_warning", "library_log"} <= names
    return names


def hostile_objects(tmp_path: Path) -> list[Path]:
    files = []
    for n, text in enumerate(HOSTILE_TEXT):
        for charset in (text, *CHARSETS):
            ds = synth.ct(patient_id=f"FUZZ{n}", pixel_bytes=64)
            pn = text.replace(b"\\", b"/")[:60]
            data = with_raw(
                ds, SpecificCharacterSet=("CS", charset), PatientName=("PN", pn), StudyDescription=("LO", text)
            )
            files.append(part10(tmp_path / f"fuzz-{len(files)}.dcm", ds, EXPLICIT_LE, data))
    return files


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(body)) + body


def associate_rq(calling: bytes, called: bytes = b"PACSD") -> bytes:
    """An A-ASSOCIATE-RQ for Verification, with raw AE title bytes."""
    body = struct.pack(">H2x", 1) + called.ljust(16)[:16] + calling.ljust(16)[:16] + bytes(32)
    body += _item(0x10, b"1.2.840.10008.3.1.1.1")
    context = struct.pack(">BxBx", 1, 0) + _item(0x30, b"1.2.840.10008.1.1") + _item(0x40, b"1.2.840.10008.1.2")
    body += _item(0x20, context)
    body += _item(0x50, _item(0x51, struct.pack(">I", 16384)))
    return struct.pack(">BxI", 0x01, len(body)) + body


def send_raw(server: Server, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except OSError:
            pass  # the server may drop us mid-way: that is its answer


def garbage_pdus() -> list[bytes]:
    rng = random.Random(11)
    pdus = [
        b"\x01\x00\x00\x00\x00\x05abcde",
        b"\x04\x00\x00\x00\x00\x10" + b"\n" + FORGED.encode()[:15],
        b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x06",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x01\x00\xff\xff\xff\xff",
        FORGED.encode() + b"\n",
    ]
    pdus += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(20)]
    for calling in (b"\n" + FORGED.encode()[:14] + b"\n", b"\x1b[2J\x00\r\n", "Ä\u2028".encode(), b"\xff" * 16):
        rq = associate_rq(calling)
        pdus += [rq, rq[: len(rq) // 2], rq + b"\x04\x00\x00\x00\x00\x02\x00\x00"]
    return pdus


def test_every_stderr_line_is_a_pacsd_json_event(server: Server, tmp_path: Path) -> None:
    objects = hostile_objects(tmp_path)
    statuses = SCU(server, "FUZZER").store(*objects)
    for pdu in garbage_pdus():
        send_raw(server, pdu)
    server.echoscu()  # a well-behaved client, served after all of it
    [status] = SCU(server).store(synth.ct(patient_id="AFTER", pixel_bytes=512))
    assert status.Status == 0x0000
    server.stop()

    known = pacsd_events()
    lines = server.log_path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    events = []
    for number, line in enumerate(lines[:-1], 1):
        try:
            event = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line[:300]!r}") from None
        assert isinstance(event, dict), line[:300]
        assert event.get("event") in known, f"line {number}: not a pacsd event: {line[:300]!r}"
        events.append(event)
    stored = {e["sop_instance_uid"] for e in events if e["event"] == "stored"}
    assert FORGED_UID not in stored
    sent = {str(e["sop_instance_uid"]) for e in events if e["event"] in ("stored", "store_refused")}
    assert stored <= sent
    assert len(stored) == server.stats()["instances"]
    # The fuzz did reach the libraries: their text came out as events, escaped.
    assert [e for e in events if e["event"].startswith("library_")]
    assert any("\n" in str(e.get("text", "")) or "\n" in str(e.get("reason", "")) for e in events)
    assert sum(1 for s in statuses if s.Status == 0x0000) >= 1


LIBRARY_NOISE = f"""
import logging, sys, threading, warnings
from pacsd import log
log.configure()
print("raw line\\n" + {FORGED!r}, file=sys.stderr)
sys.stderr.write("no newline at exit")
warnings.warn("warned\\n" + {FORGED!r})
logging.getLogger("pynetdicom").error("logged %s", "\\n" + {FORGED!r})
threading.Thread(target=lambda: 1 / 0).start()
log.say("pacsd: a line for a person\\nwith a newline")
raise SystemExit(3)
"""


def test_library_output_warnings_and_tracebacks_are_events(tmp_path: Path) -> None:
    """What libraries write, warn, log or raise comes out as pacsd events; only
    log.say (the CLI's one-line messages) writes a plain line."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", LIBRARY_NOISE], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert "pacsd: a line for a person with a newline" in lines
    events = [json.loads(line) for line in lines if line != "pacsd: a line for a person with a newline"]
    names = [e["event"] for e in events]
    assert names.count("library_output") == 3, lines  # two printed lines, and the unterminated one at exit
    assert {"library_warning", "library_log", "unhandled_exception"} <= set(names)
    assert "stored" not in names
    assert all(e["event"] in pacsd_events() for e in events)
