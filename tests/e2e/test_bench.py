"""scripts/bench --quick: a few objects through every peer, so the benchmark
keeps working. Timings are printed, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert all(r["value"] > 0 for r in rows)
    assert "vs orthanc" in result.stdout
