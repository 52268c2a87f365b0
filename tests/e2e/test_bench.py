"""scripts/bench --quick: a few objects through every peer, so the benchmark
keeps working. Timings are printed, never asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless

from tests.e2e.conftest import DCMTK_ENV, REPO


def test_bench_quick_runs_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--json", str(out)],
        env=DCMTK_ENV, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    workloads = {(r["peer"], r["workload"]) for r in rows}
    for peer in ("pacsd", "orthanc", "storescp"):
        assert (peer, "store small 4 assoc") in workloads
    assert ("pacsd", "C-MOVE 8-instance study") in workloads and ("orthanc", "C-FIND study median") in workloads
    assert any(r["peer"] == "wlmscpfs" and r["workload"].startswith("MWL query") for r in rows)
    assert any(r["peer"] == "pacsd" and r["workload"].startswith("MWL query") for r in rows)
    # Every conversion of both images by pacsd; DCMTK's tools for all but JPEG 2000.
    codecs = [r for r in rows if r["unit"] == "ms/frame"]
    assert len([r for r in codecs if r["peer"] == "pacsd"]) == 14
    assert {r["workload"] for r in codecs if r["peer"] == "dcmtk"} == {
        r["workload"] for r in codecs if r["peer"] == "pacsd" and "JPEG 2000" not in r["workload"]
    }
    for peer in ("pacsd", "orthanc"):  # each delivered 8 uncompressed files (else the bench fails)
        assert (peer, "C-MOVE 8 JPEG-LS to uncompressed") in workloads
    # DCMTK's figures are a tool's time less a copy's: with --quick's one
    # frame the difference can be nothing on a busy machine (never negative).
    assert all(r["value"] > 0 for r in rows if r["peer"] != "dcmtk")
    assert all(r["value"] >= 0 for r in rows if r["peer"] == "dcmtk")
    assert "vs orthanc" in result.stdout and "vs dcmtk" in result.stdout


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_move_jls_check_refuses_a_compressed_or_altered_delivery(bench: ModuleType, tmp_path: Path) -> None:
    """What move-jls measures only counts if what arrived is uncompressed
    and the original pixels: a JPEG-LS file, or other pixels, is an error."""
    study, _, pixels = bench.make_jls_study(tmp_path, 2)
    check = bench.uncompressed_check(pixels)
    received = tmp_path / "received"
    received.mkdir()
    check("peer", received)  # nothing arrived: the file count is move_rate's to check
    files = sorted(study.iterdir())
    (received / "a.dcm").write_bytes(files[0].read_bytes())
    with pytest.raises(RuntimeError, match="1 files arrived compressed"):
        check("peer", received)
    ds = pydicom.dcmread(files[0])
    ds.decompress(generate_instance_uid=False)
    ds.save_as(received / "a.dcm", enforce_file_format=True)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    check("peer", received)  # decoded: passes
    ds.PixelData = bytes(len(ds.PixelData))
    ds.save_as(received / "a.dcm", enforce_file_format=True)
    with pytest.raises(RuntimeError, match="does not hold the original pixels"):
        check("peer", received)
    assert pydicom.dcmread(files[1]).file_meta.TransferSyntaxUID == JPEGLSLossless
