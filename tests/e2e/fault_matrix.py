"""The caching proxy's fault matrix: what the client saw in each fault
case of ``test_proxy.py`` and what the case left behind. The cases append
to it; conftest's ``pytest_terminal_summary`` prints it after the run."""

from __future__ import annotations

# (case, status the client saw with its comment, "rows added | staged files left")
MATRIX: list[tuple[str, str, str]] = []


def table() -> list[str]:
    """The matrix as Markdown table lines."""
    lines = ["| case | client saw | rows added | staged files left |"]
    lines += [f"| {case} | {status} | {effect} |" for case, status, effect in MATRIX]
    return lines
