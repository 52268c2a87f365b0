"""A real upstream PACS for the proxy tests: Debian's Orthanc, with its own
temporary config, storage and ports. Ended by its own process id."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from pacsd.testing import peers

UPSTREAM_AE = "UPSTREAM"


class Orthanc(peers.Orthanc):
    """Orthanc accepting only the AE titles in *modalities* (name -> port):
    anyone else's association is rejected ("calling AE not recognized")."""

    def __init__(self, workdir: Path, modalities: dict[str, int], port: int | None = None) -> None:
        super().__init__(
            workdir,
            ae_title=UPSTREAM_AE,
            port=port,
            modalities=modalities,
            always_allow=("Store",),  # the tests load it over DICOM
            name="upstream",
        )

    @staticmethod
    def toml(port: int, name: str = "MAINPACS") -> str:
        return peers.remote_toml(name, port, UPSTREAM_AE)

    def store(self, datasets: list[Dataset]) -> None:
        ae = AE(ae_title="LOADER")
        syntaxes = sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets})
        for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets} | {CTImageStorage}):
            ae.add_requested_context(sop_class, syntaxes)
        assoc = ae.associate(peers.LOOPBACK, self.port, ae_title=UPSTREAM_AE)
        assert assoc.is_established, "Orthanc refused the loader"
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                assert status.Status == 0, f"Orthanc did not store {ds.SOPInstanceUID}: 0x{status.Status:04X}"
        finally:
            assoc.release()
