"""Config errors are one clear line naming the file and key, exit status 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pacsd.config import ConfigError, load, parse
from tests.e2e.conftest import REPO, Server, free_port, pacsd_cmd

REMOTE = '[remotes.UP]\nhost = "127.0.0.1"\nport = 4242\n'


def test_virtual_section(tmp_path: Path) -> None:
    text = REMOTE + '[virtual]\nupstreams = ["UP"]\n[virtual.UP]\nretrieve = "get"\nquery_filter = "json:loads"\n'
    settings = parse(text, "x.toml", tmp_path)
    assert settings.virtual is not None
    [upstream] = settings.virtual.upstreams
    assert (upstream.remote.name, upstream.retrieve, upstream.max_fetches) == ("UP", "get", 2)
    assert upstream.query_filter is not None and upstream.query_filter_name == "json:loads"
    assert parse(REMOTE, "x.toml", tmp_path).virtual is None


def test_transcode_section(tmp_path: Path) -> None:
    settings = parse("[transcode]\nprocesses = 3\nallow_lossy = true\n", "x.toml", tmp_path)
    assert (settings.transcode.processes, settings.transcode.allow_lossy) == (3, True)
    default = parse("", "x.toml", tmp_path).transcode
    assert default.processes >= 1 and default.allow_lossy is False


def run_serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pacsd_cmd("serve", "--config", str(config)), capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    "text, words",
    [
        ('[server]\nport = "eleven"\n', ["[server] port", "expected int", "str"]),
        ("[server]\nport = 70000\n", ["[server] port", "outside 1-65535"]),
        ('[server]\nae_tilte = "X"\n', ["[server] ae_tilte", "unknown key"]),
        ('[server]\nae_title = "MUCH_TOO_LONG_AE_TITLE"\n', ["[server] ae_title", "not a valid AE title"]),
        ("[server]\nport = true\n", ["[server] port", "expected int", "bool"]),
        ('[remotes.WS1]\nhost = "127.0.0.1"\n', ["[remotes.WS1] port", "missing"]),
        ('[remotes.WS1]\nhost = "h"\nport = 1\ncolour = 1\n', ["[remotes.WS1] colour", "unknown key"]),
        ("[bogus]\n", ["bogus", "unknown key"]),
        ("[server]\nworkers = 0\n", ["[server] workers", "between 1 and 64"]),
        ("[transcode]\nprocesses = 0\n", ["[transcode] processes", "between 1 and 64"]),
        ('[transcode]\nallow_lossy = "yes"\n', ["[transcode] allow_lossy", "expected bool", "str"]),
        ("[transcode]\nlossy = true\n", ["[transcode] lossy", "unknown key"]),
        ("[server\n", ["not valid TOML"]),
        ('[virtual]\nupstreams = ["NOPE"]\n', ["[virtual] upstreams", "'NOPE' is not a [remotes] entry"]),
        ("[virtual]\nupstreams = []\n", ["[virtual] upstreams", "at least one"]),
        (REMOTE + '[virtual]\nupstreams = ["UP"]\n[virtual.UP]\nretrieve = "ftp"\n', ["[virtual.UP] retrieve"]),
        (
            REMOTE + '[virtual]\nupstreams = ["UP"]\n[virtual.UP]\nfetch_timeout = 0\n',
            ["fetch_timeout", "between 0.001"],
        ),
        (REMOTE + '[virtual]\nupstreams = ["UP"]\n[virtual.UP]\nquery_filter = "nosuch:fn"\n', ["cannot load"]),
        (REMOTE + '[virtual]\nupstreams = ["UP"]\n[virtual.UP]\nquery_filter = "json"\n', ["module:function"]),
        (REMOTE + '[virtual]\nupstreams = ["UP"]\n[virtual.OTHER]\n', ["[virtual] OTHER", "unknown key"]),
        # Finding 11: NaN, infinities and absurd numbers are refused, not served with.
        ("[server]\nnetwork_timeout = nan\n", ["[server] network_timeout", "finite number", "nan"]),
        ("[server]\nnetwork_timeout = inf\n", ["[server] network_timeout", "finite number", "inf"]),
        ("[server]\nnetwork_timeout = -inf\n", ["[server] network_timeout", "finite number"]),
        ("[server]\nnetwork_timeout = -1\n", ["[server] network_timeout", "-1.0 is not between 0.001 and 604800"]),
        ("[server]\nnetwork_timeout = 1e300\n", ["[server] network_timeout", "is not between"]),
        ("[server]\nmax_associations = 0\n", ["[server] max_associations", "is not between 1 and 10000"]),
        ("[limits]\npdu_timeout = nan\n", ["[limits] pdu_timeout", "finite number"]),
        ("[limits]\nassociation_timeout = inf\n", ["[limits] association_timeout", "finite number"]),
        ("[limits]\nmax_pdu_bytes = 0\n", ["[limits] max_pdu_bytes", "is not between 4096"]),
        ("[limits]\nmax_inflate_ratio = 1e9\n", ["[limits] max_inflate_ratio", "expected int", "float"]),
        ('[limits]\nmax_inflated_bytes = "1 GiB"\n', ["[limits] max_inflated_bytes", "expected int", "str"]),
        ("[limits]\nmax_fragments = true\n", ["[limits] max_fragments", "expected int", "bool"]),
        ("[limits]\nmax_object_bytes = -1\n", ["[limits] max_object_bytes", "is not between"]),
        ("[limits]\nmax_inflate_bytes = 1024\n", ["[limits] max_inflate_bytes", "unknown key"]),
        ('[limits.object_bytes_by_class]\n"1.2.x" = 1024\n', ["[limits.object_bytes_by_class] '1.2.x'", "not a SOP"]),
        ('[limits.object_bytes_by_class]\n"1.2.840." = 0\n', ["[limits.object_bytes_by_class] 1.2.840.", "between"]),
        ('[limits.object_bytes_by_class]\n"1.2.840." = nan\n', ["[limits.object_bytes_by_class] 1.2.840.", "int"]),
    ],
)
def test_config_error_is_one_line_and_exit_2(tmp_path: Path, text: str, words: list[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = run_serve(config)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0]
    for word in words:
        assert word in lines[0]


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_serve(tmp_path / "nope.toml")
    assert result.returncode == 2
    assert result.stderr.strip() == f"pacsd: {tmp_path / 'nope.toml'}: config file not found"


def test_example_config_parses_and_relative_data_dir_follows_the_file() -> None:
    settings = load(REPO / "config" / "pacsd.toml")
    assert settings.server.ae_title == "PACSD"
    assert settings.server.data_dir == (REPO / "var").resolve()
    assert "WS1" in settings.remotes


def test_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load(None)
    assert (settings.server.ae_title, settings.server.port) == ("PACSD", 11112)
    assert settings.server.data_dir == tmp_path / "var"


def test_remote_ae_title_defaults_to_table_name(tmp_path: Path) -> None:
    settings = parse('[remotes.WS1]\nhost = "127.0.0.1"\nport = 11113\n', "x.toml", tmp_path)
    assert settings.remotes["WS1"].ae_title == "WS1"
    with pytest.raises(ConfigError):
        parse("[remotes]\nWS1 = 3\n", "x.toml", tmp_path)


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    first = Server(tmp_path / "first").start()
    try:
        second = tmp_path / "second.toml"
        second.write_text(f'[server]\nport = {first.port}\ndata_dir = "{tmp_path / "other"}"\n')
        result = run_serve(second)
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last == f"pacsd: cannot listen on 127.0.0.1:{first.port}: Address already in use"
        first.echoscu()
    finally:
        first.stop()


def test_second_server_on_one_data_dir_is_refused(tmp_path: Path) -> None:
    first = Server(tmp_path).start()
    try:
        other = tmp_path / "other.toml"
        other.write_text(f'[server]\nport = {free_port()}\ndata_dir = "{first.data_dir}"\n')
        result = run_serve(other)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == f"pacsd: another pacsd is serving {first.data_dir}"
        first.echoscu()
    finally:
        first.stop()
