"""Peer processes for tests and ``scripts/bench``: free loopback ports,
starting a process with its log, waiting until it listens, stopping it by
its own process id, and the config files of pacsd and Orthanc.

Test tooling: it imports nothing from pacsd outside ``pacsd.testing``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
# DCMTK (and Orthanc, built on it) waits 40 ms per message without it.
NODELAY_ENV = {**os.environ, "TCP_NODELAY": "1"}
LOG_TAIL = 3000  # characters of a peer's log quoted in an error
DCMTK_BIN = Path("/usr/bin")  # Debian's DCMTK: the venv has pynetdicom apps of the same names


def dcmtk(tool: str) -> str:
    """The absolute path of DCMTK's *tool* (``storescu``, ``findscu``...)."""
    return str(DCMTK_BIN / tool)


class PeerError(RuntimeError):
    """A peer exited or did not listen; the message ends with its log tail."""


def free_port() -> int:
    """A port nobody listens on now (on loopback)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether a TCP connection to *port* on loopback is accepted."""
    try:
        socket.create_connection((LOOPBACK, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def log_tail(log: Path | None, size: int = LOG_TAIL) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-size:]


def start(
    cmd: Sequence[str],
    log: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout_to_log: bool = True,
) -> subprocess.Popen[bytes]:
    """Start *cmd* with its stderr (and stdout, unless *stdout_to_log* is
    false: then it is inherited) appended to *log*; no log: both discarded."""
    if log is None:
        return subprocess.Popen(
            list(cmd), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )  # fmt: skip
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=out if stdout_to_log else None, stderr=out)


def stop(proc: subprocess.Popen[bytes], grace: float = 20) -> bool:
    """End *proc* by its pid: SIGTERM, then SIGKILL if it is still running
    after *grace* seconds. Whether it ended on SIGTERM (or had already ended)."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return True


def wait_for_port(
    proc: subprocess.Popen[bytes],
    port: int,
    what: str,
    log: Path | None = None,
    timeout: float = 30,
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """Return once *proc* is *ready* and accepts connections on *port*.

    Raise :class:`PeerError` with the tail of its *log* if it exits first,
    or if it does not listen within *timeout* seconds (then it is stopped:
    a failed start leaves no process behind).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerError(f"{what} exited with {proc.returncode}:\n{log_tail(log)}")
        if ready() and accepts(port):
            return
        time.sleep(0.05)
    stop(proc, grace=5)
    raise PeerError(f"{what} did not listen on {port}:\n{log_tail(log)}")


# -- pacsd


def pacsd_command(*args: str) -> list[str]:
    """``pacsd <args>`` run by this interpreter."""
    return [sys.executable, "-m", "pacsd.cli", *args]


def remote_toml(name: str, port: int, ae_title: str | None = None) -> str:
    """A ``[remotes.<name>]`` table for a peer on loopback (its AE title
    defaults to *name*)."""
    title = f'ae_title = "{ae_title}"\n' if ae_title else ""
    return f'[remotes.{name}]\n{title}host = "{LOOPBACK}"\nport = {port}\n'


def pacsd_config(
    path: Path,
    *,
    port: int,
    data_dir: Path,
    ae_title: str = "PACSD",
    max_associations: int | None = None,
    extra: str = "",
) -> Path:
    """Write a pacsd config listening on loopback *port*; *extra* is TOML
    appended after the ``[server]`` keys (more keys, then other tables)."""
    limit = f"max_associations = {max_associations}\n" if max_associations is not None else ""
    path.write_text(
        f'[server]\nae_title = "{ae_title}"\nhost = "{LOOPBACK}"\nport = {port}\n'
        f'data_dir = "{data_dir}"\n{limit}{extra}'
    )
    return path


# -- Orthanc

DICOM_SERVICES = ("Echo", "Store", "Find", "Move", "Get")
# Debian's orthanc-dicomweb: QIDO-RS, STOW-RS and WADO-RS under DICOMWEB_ROOT.
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DICOMWEB_ROOT = "/dicom-web"


def orthanc_config(
    path: Path,
    *,
    ae_title: str,
    dicom_port: int,
    http_port: int,
    modalities: Mapping[str, int],
    always_allow: Sequence[str] = DICOM_SERVICES,
    name: str = "orthanc",
    dicomweb: bool = False,
) -> Path:
    """Write an Orthanc config beside *path*'s storage and index dirs.

    *modalities* (AE title -> port on loopback) are the peers Orthanc knows;
    the services in *always_allow* it also grants to AE titles it does not;
    *dicomweb* loads the DICOMweb plugin (on its HTTP port, no login).
    """
    work = path.parent
    config = {
        "Name": name,
        "StorageDirectory": str(work / "orthanc-storage"),
        "IndexDirectory": str(work / "orthanc-index"),
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "DicomCheckCalledAet": False,
        **{f"DicomAlwaysAllow{service}": service in always_allow for service in DICOM_SERVICES},
        "DicomModalities": {ae: [ae, LOOPBACK, port] for ae, port in modalities.items()},
        "StorageCompression": False,
        "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [],
    }
    if dicomweb:
        config["DicomWeb"] = {"Enable": True, "Root": DICOMWEB_ROOT + "/", "EnableWado": False}
        config["AuthenticationEnabled"] = False
    path.write_text(json.dumps(config))
    return path


class Orthanc:
    """Debian's Orthanc with its own config, storage, log and ports in
    *workdir*; started and stopped (by its pid) as often as a test likes."""

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str = "ORTHANC",
        port: int | None = None,
        modalities: Mapping[str, int] | None = None,
        always_allow: Sequence[str] = DICOM_SERVICES,
        name: str = "orthanc",
        dicomweb: bool = False,
    ) -> None:
        self.workdir = workdir
        self.ae_title = ae_title
        self.port = port or free_port()
        self.http_port = free_port()
        self.log = workdir / "orthanc.log"
        self.config = orthanc_config(
            workdir / "orthanc.json",
            ae_title=ae_title,
            dicom_port=self.port,
            http_port=self.http_port,
            modalities=modalities or {},
            always_allow=always_allow,
            name=name,
            dicomweb=dicomweb,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> subprocess.Popen[bytes]:
        """Start Orthanc, without waiting for it to listen."""
        self.proc = start(["Orthanc", str(self.config)], self.log, env=NODELAY_ENV)
        return self.proc

    def start(self, timeout: float = 30) -> Orthanc:
        wait_for_port(self.launch(), self.port, "Orthanc", self.log, timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
