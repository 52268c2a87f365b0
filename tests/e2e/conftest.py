"""Fixtures: a real `pacsd serve` process on a free loopback port.

Every process a test starts is ended by its own process id.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset

from pacsd.testing import peers
from pacsd.testing.peers import free_port
from pacsd.testing.peers import pacsd_command as pacsd_cmd
from tests.e2e import fault_matrix

# Send Part 10 files byte for byte (pynetdicom otherwise decodes and
# re-encodes them), so tests control exactly what goes on the wire.
_config.STORE_SEND_CHUNKED_DATASET = True

REPO = Path(__file__).resolve().parents[2]
DCMTK_ENV = peers.NODELAY_ENV


class Server:
    """A pacsd process with its own config and data dir."""

    def __init__(self, workdir: Path, ae_title: str = "PACSD", extra_toml: str = "") -> None:
        self.workdir = workdir
        self.ae_title = ae_title
        self.port = free_port()
        self.data_dir = workdir / "data"
        self.config = peers.pacsd_config(
            workdir / "pacsd.toml",
            port=self.port,
            data_dir=self.data_dir,
            ae_title=ae_title,
            max_associations=128,
            extra=extra_toml,
        )
        self.log_path = workdir / "pacsd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        # The repository on the path: configs may name test query filters.
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = pacsd_cmd("serve", "--config", str(self.config))
        proc = self.proc = peers.start(cmd, self.log_path, env=env, cwd=self.workdir, stdout_to_log=False)

        def started() -> bool:
            # Our process must have started (holding the data dir), not a
            # dying predecessor still answering on the port.
            return any(e.get("pid") == proc.pid for e in self.events("server_started"))

        peers.wait_for_port(proc, self.port, "pacsd", self.log_path, ready=started)
        return self

    def stop(self) -> None:
        """SIGTERM, and check the server (every worker) shut down cleanly."""
        if self.proc and self.proc.poll() is None:
            if not peers.stop(self.proc, grace=15):
                raise AssertionError(f"pacsd did not stop on SIGTERM:\n{self.log()[-3000:]}")
            assert self.proc.returncode == 0, f"pacsd exited with {self.proc.returncode}:\n{self.log()[-3000:]}"
            assert not self.events("worker_failed"), self.log()[-3000:]

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def peak_rss(self) -> int:
        """The server process's peak resident memory (VmHWM), in bytes."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmHWM for process {self.proc.pid}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                out.append(event)
        return out

    def stats(self) -> dict[str, int]:
        result = subprocess.run(
            pacsd_cmd("stats", "--config", str(self.config), "--json"), capture_output=True, text=True, check=True
        )
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def files(self) -> list[Path]:
        return sorted((self.data_dir / "files").rglob("*.dcm"))

    def temp_files(self) -> list[Path]:
        """What tmp/ holds of objects: its empty spare files do not count."""
        tmp = self.data_dir / "tmp"
        files = [p for p in [*tmp.iterdir(), *tmp.glob("spare/*")] if p.is_file()]
        return sorted(p for p in files if not (p.name.endswith(".spare") and not p.stat().st_size))

    def echoscu(self, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["/usr/bin/echoscu", "-aec", self.ae_title, "127.0.0.1", str(self.port)]  # DCMTK's, not the venv's
        result = subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"echoscu failed ({result.returncode}):\n{result.stderr}")
        return result

    def findscu(
        self, model: str, *keys: str | bytes, extra: tuple[str, ...] = (), calling_ae: str = "FINDSCU"
    ) -> tuple[list[Dataset], str]:
        """Run DCMTK findscu (-P patient root, -S study root) with -k keys;
        return the responses it received (via --extract) and its output."""
        out = Path(tempfile.mkdtemp(prefix="findscu-"))
        cmd: list[str | bytes] = [
            peers.dcmtk("findscu"),
            "-v",
            model,
            "-aet",
            calling_ae,
            "-aec",
            self.ae_title,
            "-X",
            "-od",
            str(out),
        ]
        cmd += list(extra)
        for key in keys:
            cmd += ["-k", key]
        cmd += ["127.0.0.1", str(self.port)]
        result = subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, timeout=120)
        responses = [pydicom.dcmread(f) for f in sorted(out.glob("rsp*.dcm"))]
        shutil.rmtree(out)
        return responses, (result.stdout + result.stderr).decode(errors="replace")

    def retrieve(
        self, tool: str, model: str, *keys: str, extra: tuple[str, ...] = (), out: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run DCMTK movescu or getscu against pacsd."""
        cmd = [peers.dcmtk(tool), model, "-aet", "RETRIEVER", "-aec", self.ae_title, *extra]
        if out is not None:
            cmd += ["-od", str(out)]
        for key in keys:
            cmd += ["-k", key]
        cmd += ["127.0.0.1", str(self.port)]
        return subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, text=True, timeout=180)

    def storescu(
        self, *files: Path | str, extra: tuple[str, ...] = (), check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [peers.dcmtk("storescu"), "-aec", self.ae_title, *extra, "127.0.0.1", str(self.port), *map(str, files)]
        result = subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd[:6])} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The proxy fault matrix, after a run that included its cases."""
    if fault_matrix.MATRIX:
        terminalreporter.section("proxy fault matrix")
        for line in fault_matrix.table():
            terminalreporter.write_line(line)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture
def racing(tmp_path: Path) -> Iterator[tuple[Server, int]]:
    """A server of two worker processes (two index writers) with HTTP on: (server, HTTP port)."""
    http_port = free_port()
    srv = Server(tmp_path, extra_toml=f"workers = 2\n[http]\nport = {http_port}\n").start()
    yield srv, http_port
    srv.stop()


class SCU:
    """pynetdicom as a client, where a test needs to read exact statuses."""

    def __init__(self, server: Server, calling_ae: str = "TESTSCU") -> None:
        self.server = server
        self.calling_ae = calling_ae

    def associate(self, contexts: set[tuple[str, str]]) -> Association:
        ae = AE(ae_title=self.calling_ae)
        for abstract, syntax in sorted(contexts):
            ae.add_requested_context(abstract, syntax)
        assoc = ae.associate("127.0.0.1", self.server.port, ae_title=self.server.ae_title)
        assert assoc.is_established, "association with pacsd failed"
        return assoc

    def store(self, *items: Dataset | Path) -> list[Dataset]:
        """C-STORE each item: a dataset, or a Part 10 file sent byte for byte,
        each in the transfer syntax its file meta names."""
        metas = [item.file_meta if isinstance(item, Dataset) else split_dataset(item)[0] for item in items]
        assoc = self.associate({(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in metas})
        try:
            return [assoc.send_c_store(item) for item in items]
        finally:
            assoc.release()


@pytest.fixture
def scu(server: Server) -> SCU:
    return SCU(server)


def shipped(name: str) -> Path:
    path = get_testdata_file(name)
    assert path, f"pydicom test file {name} missing"
    return Path(path)


def distinct_objects(names: list[str]) -> list[Path]:
    """Files with distinct SOP instances and consistent links between them.

    pydicom ships several encodings of the same instance (MR_small_*),
    which pacsd rightly treats as duplicates; keep the first of each.
    """
    kept: list[Path] = []
    sops: set[str] = set()
    study_patient: dict[str, str] = {}
    series_study: dict[str, str] = {}
    for name in names:
        ds = pydicom.dcmread(shipped(name), stop_before_pixels=True)
        sop, study, series = ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID
        pid = str(ds.get("PatientID", "")).strip()
        if sop in sops or study_patient.get(study, pid) != pid or series_study.get(series, study) != study:
            continue
        sops.add(sop)
        study_patient[study] = pid
        series_study[series] = study
        kept.append(shipped(name))
    return kept


class StoreSCP:
    """DCMTK storescp as a C-MOVE destination, writing what it receives."""

    def __init__(self, workdir: Path, ae_title: str = "DEST", extra: tuple[str, ...] = ()) -> None:
        self.ae_title = ae_title
        self.port = free_port()
        self.out = workdir / f"received-{ae_title}"
        self.out.mkdir()
        self.log_path = workdir / f"storescp-{ae_title}.log"
        self.log_path.write_bytes(b"")
        cmd = [peers.dcmtk("storescp"), "-d", "-aet", ae_title, "-od", str(self.out), *extra, str(self.port)]
        self.proc = peers.start(cmd, self.log_path, env=DCMTK_ENV)
        peers.wait_for_port(self.proc, self.port, "storescp", self.log_path, timeout=10)

    def toml(self, name: str | None = None) -> str:
        return peers.remote_toml(name or self.ae_title, self.port, self.ae_title)

    def received(self) -> list[Dataset]:
        return [pydicom.dcmread(p) for p in sorted(self.out.iterdir()) if p.is_file()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        peers.stop(self.proc, grace=10)
