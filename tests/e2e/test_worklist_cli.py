"""`pacsd worklist` against a data dir a server is serving: DCMTK's example
worklist files and DICOM JSON added (idempotently), refused files named one
line each, listing with filters, status changes and removal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server, pacsd_cmd

EXAMPLES = sorted(Path("/usr/share/doc/dcmtk/examples/wlistdb/OFFIS").glob("wklist*.dump"))


def worklist(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = pacsd_cmd("worklist", args[0], "--config", str(server.config), *args[1:])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def served(tmp_path: Path) -> Server:
    server = Server(tmp_path).start()
    yield server  # type: ignore[misc]
    server.stop()


def example_files(tmp_path: Path) -> list[Path]:
    out = []
    for dump in EXAMPLES:
        target = tmp_path / f"{dump.stem}.wl"
        subprocess.run(["/usr/bin/dump2dcm", "-q", str(dump), str(target)], check=True)
        out.append(target)
    return out


def listed(server: Server, *filters: str) -> list[dict[str, str]]:
    result = worklist(server, "list", "--json", *filters)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, str]] = json.loads(result.stdout)
    return rows


def test_example_worklists_added_once_listed_and_filtered(served: Server, tmp_path: Path) -> None:
    files = example_files(tmp_path)
    assert len(files) == 10
    first = worklist(served, "add", *map(str, files))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "created=10 existing=0 refused=0"
    assert worklist(served, "add", *map(str, files)).stdout.strip() == "created=0 existing=10 refused=0"
    rows = listed(served)
    assert len(rows) == 10
    vivaldi = [r for r in rows if r["PatientID"] == "AV35674"]
    assert {r["ScheduledProcedureStepID"] for r in vivaldi} == {"SPD3445", "SPD1342", "SPD4564"}
    assert [r["PatientID"] for r in listed(served, "--station", "AA33")] == ["AV35674"]  # of AA32\AA33
    assert {r["Modality"] for r in listed(served, "--modality", "CT")} == {"CT"}
    assert len(listed(served, "--date", "19960101-19961231")) == 6
    # One patient per PatientID, shared with images of the same key.
    assert SCU(served).store(synth.ct(patient_id="AV35674", issuer=None))[0].Status == 0x0000
    assert served.stats()["patients"] == 4  # the four PatientIDs of the examples; the image joined AV35674


def test_status_and_removal(served: Server, tmp_path: Path) -> None:
    worklist(served, "add", str(example_files(tmp_path)[0]))
    [row] = listed(served)
    keys = (row["StudyInstanceUID"], row["ScheduledProcedureStepID"])
    assert worklist(served, "status", *keys, "COMPLETED").returncode == 0
    assert listed(served) == []  # done items are not listed by default
    assert [r["ScheduledProcedureStepStatus"] for r in listed(served, "--all")] == ["COMPLETED"]
    bad = worklist(served, "status", *keys, "FINISHED")
    assert bad.returncode == 1 and "'FINISHED' is not one of" in bad.stderr
    assert worklist(served, "remove", *keys).returncode == 0
    gone = worklist(served, "remove", *keys)
    assert gone.returncode == 1 and "no worklist item" in gone.stderr
    assert listed(served, "--all") == []


def test_refused_files_are_named_one_line_each_and_nothing_is_half_created(served: Server, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    step = {"00080060": {"vr": "CS", "Value": ["MR"]}, "00400002": {"vr": "DA", "Value": ["20261201"]}}
    item = {"00100020": {"vr": "LO", "Value": ["JSON-1"]}, "00400100": {"vr": "SQ", "Value": [step]}}
    good.write_text(json.dumps([item]))
    no_modality = tmp_path / "no-modality.json"
    no_modality.write_text(
        json.dumps([item, {**item, "00400100": {"vr": "SQ", "Value": [{"00400002": step["00400002"]}]}}])
    )
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("hello")
    result = worklist(served, "add", str(good), str(no_modality), str(garbage), str(not_dicom))
    assert result.returncode == 1
    assert result.stdout.strip() == "created=1 existing=0 refused=3"
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 3, result.stderr
    assert lines[0].startswith(f"{no_modality}: ScheduledProcedureStepSequence[0].Modality:")
    assert lines[1].startswith(f"{garbage}: not valid JSON")
    assert lines[2].startswith(f"{not_dicom}: ")
    assert [r["PatientID"] for r in listed(served)] == ["JSON-1"]  # no-modality.json's first item was not kept
    served.echoscu()
