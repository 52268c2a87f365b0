"""Issue 11, finding 15: a data dir or index pacsd cannot use is one line,
``pacsd: <path>: <problem>``, and exit status 2, for serve, stats and fsck
alike; not a traceback. (A port already taken stays exit status 1:
tests/e2e/test_config.py.)"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pacsd.index.migrations import LATEST
from tests.e2e.conftest import REPO, Server, free_port, pacsd_cmd

NOT_A_DIRECTORY = "exists and is not a directory"
NOT_AN_INDEX = "not an SQLite index (corrupt, or another kind of file)"


def config(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / "pacsd.toml"
    path.write_text(f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\ndata_dir = "{data_dir}"\n')
    return path


def run(command: str, config_file: Path) -> tuple[int, list[str]]:
    """Run `pacsd COMMAND --config FILE`: its exit status and stderr lines.
    A serve that did start is ended by its pid and fails the test."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        pacsd_cmd(command, "--config", str(config_file)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"pacsd {command} kept running") from None
    return proc.returncode, err.decode(errors="replace").splitlines()


def assert_one_line(command: str, config_file: Path, path: Path, problem: str) -> None:
    code, lines = run(command, config_file)
    assert (code, lines) == (2, [f"pacsd: {path}: {problem}"]), (code, "\n".join(lines))


def served_data_dir(tmp_path: Path) -> Path:
    """A data dir a server has run on: layout and index in place."""
    (tmp_path / "served").mkdir()
    srv = Server(tmp_path / "served").start()
    srv.echoscu()
    srv.stop()
    return srv.data_dir


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return served_data_dir(tmp_path)


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database, whatever its name says\n" * 100)


def directory(path: Path) -> None:
    path.mkdir()


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory")
    cfg = config(tmp_path, data_dir)
    assert_one_line("serve", cfg, data_dir, NOT_A_DIRECTORY)
    # fsck creates nothing either: it names the file first.
    assert_one_line("fsck", cfg, data_dir, NOT_A_DIRECTORY)
    assert data_dir.read_text() == "not a directory"


@pytest.mark.parametrize("name", ["files", "tmp", "tmp/spare"])
def test_layout_directory_is_a_file(tmp_path: Path, data_dir: Path, name: str) -> None:
    target = data_dir / name
    shutil.rmtree(target)
    target.write_text("not a directory")
    cfg = config(tmp_path, data_dir)
    assert_one_line("serve", cfg, target, NOT_A_DIRECTORY)
    assert_one_line("fsck", cfg, target, NOT_A_DIRECTORY)


@pytest.mark.parametrize("spoil, problem", [(garbage, NOT_AN_INDEX), (directory, "is a directory, not an index")])
@pytest.mark.parametrize("command", ["serve", "stats", "fsck"])
def test_unusable_index(
    tmp_path: Path, data_dir: Path, spoil: Callable[[Path], None], problem: str, command: str
) -> None:
    index = data_dir / "index.sqlite"
    for path in data_dir.glob("index.sqlite*"):
        path.unlink()
    spoil(index)
    assert_one_line(command, config(tmp_path, data_dir), index, problem)


@pytest.mark.parametrize("command", ["stats", "fsck"])
def test_missing_index(tmp_path: Path, command: str) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "files").mkdir(parents=True)
    index = data_dir / "index.sqlite"
    assert_one_line(
        command, config(tmp_path, data_dir), index, "no index here (has the server run with this data_dir?)"
    )
    assert not index.exists()  # neither command creates one


def test_index_of_another_program(tmp_path: Path, data_dir: Path) -> None:
    """A valid SQLite file that is not a pacsd index (schema version 0)."""
    index = data_dir / "index.sqlite"
    for path in data_dir.glob("index.sqlite*"):
        path.unlink()
    with sqlite3.connect(index) as conn:
        conn.execute("CREATE TABLE other (x)")
    conn.close()
    assert_one_line("stats", config(tmp_path, data_dir), index, f"index schema version 0, this pacsd reads {LATEST}")


def test_index_from_a_newer_pacsd(tmp_path: Path, data_dir: Path) -> None:
    index = data_dir / "index.sqlite"
    with sqlite3.connect(index) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    cfg = config(tmp_path, data_dir)
    assert_one_line("serve", cfg, index, f"index schema version 99 is newer than this pacsd ({LATEST}); upgrade pacsd")
    assert_one_line("stats", cfg, index, f"index schema version 99, this pacsd reads {LATEST}")


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """*path* made unwritable, even for root: immutable (chattr +i) when
    running as root, read-only permissions otherwise."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory unwritable for root")
    result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"chattr +i not possible here (needs CAP_LINUX_IMMUTABLE and ext4/xfs): {result.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("name", ["", "tmp", "files"])
def test_unwritable_directory(tmp_path: Path, data_dir: Path, name: str) -> None:
    target = data_dir / name if name else data_dir
    errno_text = "Permission denied" if os.geteuid() != 0 else "Operation not permitted"
    cfg = config(tmp_path, data_dir)
    with unwritable(target):
        assert_one_line("serve", cfg, target, f"directory is not writable: {errno_text}")
        assert_one_line("fsck", cfg, target, f"directory is not writable: {errno_text}")
    # And once it is writable again, the server starts on the same data dir.
    srv = Server(data_dir.parent).start()  # its config names the same data dir
    srv.echoscu()
    srv.stop()
