"""A full disk: refusals with 0xA700, nothing half-written, still serving.

Needs a small tmpfs for the data dir (root, or CAP_SYS_ADMIN); skipped
where mounting is not permitted.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server, pacsd_cmd


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_refuses_cleanly_and_keeps_what_was_acknowledged(tmp_path: Path, tiny_disk: Path) -> None:
    server = Server(tmp_path)
    server.data_dir = tiny_disk / "data"
    server.config.write_text(server.config.read_text().replace(str(tmp_path / "data"), str(server.data_dir)))
    server.start()
    try:
        study, series = synth.new_uid(), synth.new_uid()
        objects = [
            synth.ct(patient_id="FULL", study_uid=study, series_uid=series, pixel_bytes=100_000) for _ in range(30)
        ]
        statuses = SCU(server).store(*objects)
        codes = [s.Status for s in statuses]
        assert 0x0000 in codes and 0xA700 in codes, codes
        assert all(code in (0x0000, 0xA700) for code in codes)
        refused = [s for s in statuses if s.Status == 0xA700]
        assert all(str(s.ErrorComment) for s in refused)
        server.echoscu()
        acknowledged = {ds.SOPInstanceUID for ds, s in zip(objects, statuses, strict=True) if s.Status == 0}
        on_disk = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in server.files()}
        assert on_disk == acknowledged  # refused objects left no file
        assert server.stats()["instances"] == len(acknowledged)
        assert server.temp_files() == []
        fsck = subprocess.run(pacsd_cmd("fsck", "--config", str(server.config)), capture_output=True, text=True)
        assert "missing file" not in fsck.stdout
    finally:
        server.stop()
