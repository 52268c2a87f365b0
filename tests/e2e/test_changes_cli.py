"""`pacsd changes` against the index of a real `pacsd serve`: entries in
order with their UIDs, paging with --since/--limit, --json, usage errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

from pacsd.domain.outcomes import Change
from pacsd.testing import synth
from tests.e2e.conftest import DCMTK_ENV, REPO, Server, pacsd_cmd

FIELDS = [f.name for f in dataclasses.fields(Change)]


def changes(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        pacsd_cmd("changes", "--config", str(server.config), *args), capture_output=True, text=True, env=env
    )


def entries(server: Server, *args: str) -> list[dict[str, object]]:
    result = changes(server, *args, "--json")
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, list)
    return parsed


def test_changes_of_a_serving_archive(tmp_path: Path) -> None:
    first = synth.series(2, patient_id="CLI-1", issuer="ISS X")
    other = synth.ct(patient_id="CLI-2")
    paths = [synth.write(ds, tmp_path / f"{n}.dcm") for n, ds in enumerate([*first, other])]
    server = Server(tmp_path).start()
    try:
        cmd = ["/usr/bin/storescu", "-aec", server.ae_title, "127.0.0.1", str(server.port), *map(str, paths)]
        stored = subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, text=True, timeout=120)
        assert stored.returncode == 0, stored.stderr
        served = entries(server)
    finally:
        server.stop()
    assert entries(server) == served  # the same read once the server is gone

    study, series = str(first[0].StudyInstanceUID), str(first[0].SeriesInstanceUID)
    p1 = {"patient_id": "CLI-1", "issuer": "ISS X"}
    expected = [
        {**p1, "level": "patient"},
        {**p1, "level": "study", "study_uid": study},
        {**p1, "level": "series", "study_uid": study, "series_uid": series},
        {**p1, "level": "instance", "study_uid": study, "series_uid": series, "sop_uid": first[0].SOPInstanceUID},
        {**p1, "level": "instance", "study_uid": study, "series_uid": series, "sop_uid": first[1].SOPInstanceUID},
        {"patient_id": "CLI-2", "level": "patient"},
        {"patient_id": "CLI-2", "level": "study", "study_uid": other.StudyInstanceUID},
        {"patient_id": "CLI-2", "level": "series", "study_uid": other.StudyInstanceUID,
         "series_uid": other.SeriesInstanceUID},
        {"patient_id": "CLI-2", "level": "instance", "study_uid": other.StudyInstanceUID,
         "series_uid": other.SeriesInstanceUID, "sop_uid": other.SOPInstanceUID},
    ]  # fmt: skip
    assert all(list(entry) == FIELDS for entry in served)
    assert [entry["seq"] for entry in served] == list(range(1, 10))
    assert all(entry["action"] == "create" for entry in served)
    blank = {"patient_id": "", "issuer": "", "study_uid": "", "series_uid": "", "sop_uid": ""}
    for entry, want in zip(served, expected, strict=True):
        got = {k: v for k, v in entry.items() if k not in ("seq", "at", "action")}
        assert got == {**blank, **want}
    assert all(str(entry["at"]).endswith("Z") for entry in served)

    # Paging: entries after --since, at most --limit of them.
    assert entries(server, "--since", "4", "--limit", "3") == served[4:7]
    assert entries(server, "--since", "9") == []

    # Text: one aligned line per entry.
    text = changes(server, "--since", "2", "--limit", "3")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["3", "4", "5"]
    assert len({line.index("create") for line in lines}) == 1
    assert f"sop={first[0].SOPInstanceUID}" in lines[1] and 'issuer="ISS X"' in lines[1]


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    server = Server(tmp_path)  # never started: arguments are checked before the index is opened
    for args in (["--since", "-1"], ["--since", "x"], ["--limit", "0"], ["--limit", "many"]):
        result = changes(server, *args)
        assert result.returncode == 2, args
        assert "usage:" in result.stderr and result.stdout == ""
