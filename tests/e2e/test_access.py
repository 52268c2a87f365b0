"""[server] allowed_calling_aes: other calling AEs are rejected at association."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.conftest import DCMTK_ENV, Server


def echo(server: Server, calling_ae: str) -> int:
    cmd = ["echoscu", "-aet", calling_ae, "-aec", server.ae_title, "127.0.0.1", str(server.port)]
    return subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, timeout=60).returncode


def test_only_allowed_calling_aes_associate(tmp_path: Path) -> None:
    # One worker: this test also covers the single-process server.
    server = Server(tmp_path, extra_toml='allowed_calling_aes = ["GOODSCU", "WS1"]\nworkers = 1\n').start()
    try:
        assert echo(server, "GOODSCU") == 0
        assert echo(server, "WS1") == 0
        assert echo(server, "EVILSCU") != 0
        [rejected] = server.events("association_rejected")
        assert rejected["calling_ae"] == "EVILSCU"
        assert "allowed_calling_aes" in rejected["reason"]
    finally:
        server.stop()
