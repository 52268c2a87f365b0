"""A real upstream PACS for the proxy tests: Debian's Orthanc, with its own
temporary config, storage and ports. Ended by its own process id."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from tests.e2e.conftest import free_port

UPSTREAM_AE = "UPSTREAM"


class Orthanc:
    """Orthanc accepting only the AE titles in *modalities* (name -> port):
    anyone else's association is rejected ("calling AE not recognized")."""

    def __init__(self, workdir: Path, modalities: dict[str, int], port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.config = workdir / "orthanc.json"
        self.config.write_text(
            json.dumps(
                {
                    "Name": "upstream",
                    "StorageDirectory": str(workdir / "orthanc-storage"),
                    "IndexDirectory": str(workdir / "orthanc-index"),
                    "DicomAet": UPSTREAM_AE,
                    "DicomPort": self.port,
                    "HttpPort": free_port(),
                    "RemoteAccessAllowed": False,
                    "DicomCheckCalledAet": False,
                    "DicomAlwaysAllowEcho": False,
                    "DicomAlwaysAllowStore": True,  # the tests load it over DICOM
                    "DicomAlwaysAllowFind": False,
                    "DicomAlwaysAllowMove": False,
                    "DicomAlwaysAllowGet": False,
                    "DicomModalities": {ae: [ae, "127.0.0.1", port] for ae, port in modalities.items()},
                    "StorageCompression": False,
                    "Plugins": [],
                }
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def toml(port: int, name: str = "MAINPACS") -> str:
        return f'[remotes.{name}]\nae_title = "{UPSTREAM_AE}"\nhost = "127.0.0.1"\nport = {port}\n'

    def start(self) -> Orthanc:
        with (self.workdir / "orthanc.log").open("ab") as log:
            self.proc = subprocess.Popen(["Orthanc", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("Orthanc did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def store(self, datasets: list[Dataset]) -> None:
        ae = AE(ae_title="LOADER")
        syntaxes = sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets})
        for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets} | {CTImageStorage}):
            ae.add_requested_context(sop_class, syntaxes)
        assoc = ae.associate("127.0.0.1", self.port, ae_title=UPSTREAM_AE)
        assert assoc.is_established, "Orthanc refused the loader"
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                assert status.Status == 0, f"Orthanc did not store {ds.SOPInstanceUID}: 0x{status.Status:04X}"
        finally:
            assoc.release()
