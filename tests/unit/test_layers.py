"""The import graph flows one way (DESIGN.md, "Shape"):

    adapters (dimse, web, cli)  ->  services (the Archive)  ->  ports  <-  implementations (index, storage, upstream)

Adapters reach the index, the files and the caching proxy only through the
Archive; services only through the ports; implementations never reach up.
Every import of every module counts, including those inside functions and
under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pacsd"

# What each part of the package may import (besides itself, the standard
# library and third-party packages). "pacsd" is the package's __init__ (its version).
ALLOWED: dict[str, set[str]] = {
    "log": set(),
    "domain": {"pacsd"},
    "config": {"domain"},
    "ports": {"domain"},
    "wire": {"domain", "log"},
    "index": {"domain", "ports", "log"},
    "storage": {"domain", "ports", "log"},
    "upstream": {"domain", "ports", "wire", "config", "log"},
    "services": {"domain", "ports", "config", "log"},
    "admin": {"services", "domain", "ports", "log"},
    "dimse": {"services", "domain", "ports", "wire", "config", "log"},
    "web": {"services", "domain", "ports", "config", "log"},
    "testing": {"domain"},  # test tooling: synthetic data (valid UIDs) and peers, nothing of the archive
    # Wiring and the command line may import anything.
    "bootstrap": {"*"},
    "cli": {"*"},
    "workers": {"log"},
}


def part_of(module: str) -> str:
    """'pacsd.index.search' -> 'index'; 'pacsd' -> 'pacsd'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(source: str, module: str) -> list[tuple[int, str]]:
    """(line, imported pacsd module) for every import in *source*."""
    found = []
    package = module if module.endswith("__init__") else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            if name == "pacsd":  # `from pacsd import log` imports pacsd.log; `__version__` is the package's
                found += [(node.lineno, f"pacsd.{alias.name}") for alias in node.names if _is_module(alias.name)]
    return [(line, name) for line, name in found if name == "pacsd" or name.startswith("pacsd.")]


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def violations(source: str, module: str) -> list[str]:
    own = part_of(module)
    allowed = ALLOWED[own]
    problems = []
    for line, name in imports(source, module):
        target = part_of(name)
        if target == own or "*" in allowed or target in allowed:
            continue
        if name == "pacsd" and own != "pacsd":  # `from pacsd import log` also names the package itself
            continue
        problems.append(f"{module}:{line} ({own}) imports {name} ({target})")
    return problems


def modules() -> list[tuple[str, Path]]:
    """Every module but the package's own __init__ (it imports nothing)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        found.append((".".join(relative.parts), path))
    return found


def test_every_part_of_the_package_has_a_rule() -> None:
    parts = {part_of(module) for module, _ in modules()}
    assert parts <= set(ALLOWED), f"no import rule for {sorted(parts - set(ALLOWED))}"


def test_imports_flow_one_way() -> None:
    problems = [p for module, path in modules() for p in violations(path.read_text(), module)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("pacsd.dimse.find", "from pacsd.index import search"),  # an adapter reaching the index
        ("pacsd.dimse.store", "from pacsd.storage.files import Storage"),  # ... the files
        ("pacsd.dimse.move", "from pacsd.upstream.fetch import Proxy"),  # ... the proxy
        ("pacsd.web.worklist", "from pacsd.index.sqlite import SqliteIndex"),  # the HTTP adapter too
        ("pacsd.web.app", "from pacsd.wire import statuses"),  # ... and DIMSE's status table
        ("pacsd.services.ingest", "from pacsd.index.writer import IndexWriter"),  # a service past the ports
        ("pacsd.index.search", "from pacsd.services import archive"),  # an implementation reaching up
        ("pacsd.upstream.fetch", "from pacsd.dimse import statuses"),  # the old dimse -> upstream -> dimse cycle
        ("pacsd.domain.header", "import pacsd.wire.link"),
        ("pacsd.wire.link", "def f():\n    from pacsd.services.archive import Archive\n"),  # inside a function
        ("pacsd.storage.syncer", "from ..index import writeahead"),  # relative
    ],
)
def test_a_violation_is_caught(module: str, source: str) -> None:
    assert violations(source, module)


def test_allowed_imports_pass() -> None:
    assert not violations("from pacsd.services.archive import Archive\nfrom pacsd.wire import command", "pacsd.dimse.x")
    assert not violations("from pacsd import log\nfrom pacsd.domain import uid", "pacsd.index.x")
