"""The package type-checks under mypy --strict and passes ruff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, capture_output=True, text=True, timeout=240)


def test_mypy_strict() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run("ruff", "check", "pacsd", "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run("ruff", "format", "--check", "pacsd", "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr
