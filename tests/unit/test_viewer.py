"""Rebasing an OHIF build made for ``/`` onto ``/viewer/``, its generated
config, and the ``[http]`` keys of the viewer and CORS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pacsd.config import ConfigError, parse
from pacsd.web.viewer import app_config, rebase

# The shapes the OHIF 3 build has (index.html, webpack runtime, CSS fonts).
INDEX = (
    '<link rel="manifest" href="/manifest.json"><script>window.PUBLIC_URL="/"</script>'
    '<script src="/app-config.js"></script><script defer src="/app.bundle.abc.js"></script>'
    '<link href="//cdn.example.org/x.css"><a href="https://ohif.org/">'
)
BUNDLE = 'x;(() => {\n__webpack_require__.p = "/";\n})();y="/keep";'


def build(where: Path) -> Path:
    where.mkdir()
    (where / "index.html").write_text(INDEX)
    (where / "manifest.json").write_text('{"icons": [{"src": "/assets/a.png"}], "start_url": "/"}')
    (where / "app.bundle.abc.js").write_text(BUNDLE)
    (where / "12.bundle.js").write_text("no public path here")
    (where / "app.bundle.css").write_text("@font-face{src:url(/f.woff2)}a{b:url(//cdn/x.png)}")
    return where


def test_rebase_moves_every_root_link_under_the_mount(tmp_path: Path) -> None:
    dist = build(tmp_path / "dist")
    assert rebase(dist) == 4
    index = (dist / "index.html").read_text()
    assert 'href="/viewer/manifest.json"' in index and 'window.PUBLIC_URL="/viewer/"' in index
    assert 'src="/viewer/app-config.js"' in index and 'src="/viewer/app.bundle.abc.js"' in index
    assert 'href="//cdn.example.org/x.css"' in index and 'href="https://ohif.org/"' in index  # not root links
    bundle = (dist / "app.bundle.abc.js").read_text()
    assert '__webpack_require__.p = "/viewer/";' in bundle and 'y="/keep"' in bundle
    assert (dist / "12.bundle.js").read_text() == "no public path here"
    assert json.loads((dist / "manifest.json").read_text())["icons"][0]["src"] == "/viewer/assets/a.png"
    assert (dist / "app.bundle.css").read_text() == "@font-face{src:url(/viewer/f.woff2)}a{b:url(//cdn/x.png)}"


def test_rebase_refuses_a_build_it_does_not_know(tmp_path: Path) -> None:
    dist = build(tmp_path / "dist")
    (dist / "app.bundle.abc.js").write_text('__webpack_require__.p = "/other/";')
    with pytest.raises(ValueError, match="not an OHIF build"):
        rebase(dist)


def test_app_config_points_at_pacsd() -> None:
    text = app_config("https://pacs.example.org/dicomweb")
    assert text.startswith("window.config = ") and text.endswith(";\n")
    config = json.loads(text.removeprefix("window.config = ").removesuffix(";\n"))
    assert config["routerBasename"] == "/viewer" and config["defaultDataSourceName"] == "pacsd"
    [source] = config["dataSources"]
    assert source["sourceName"] == "pacsd"
    c = source["configuration"]
    assert c["qidoRoot"] == c["wadoRoot"] == "https://pacs.example.org/dicomweb"
    assert c["imageRendering"] == c["thumbnailRendering"] == "wadors"
    assert c["supportsFuzzyMatching"] and c["supportsWildcard"] and c["enableStudyLazyLoad"]
    assert "wadoUriRoot" not in c and not c["staticWado"]


def test_http_viewer_and_cors_keys(tmp_path: Path) -> None:
    default = parse("[http]\nport = 8042\n", "x.toml", tmp_path).http
    assert default.cors_origins == () and default.viewer_dir is None
    text = '[http]\nport = 8042\ncors_origins = ["*", "http://[::1]:3000"]\nviewer_dir = "ohif"\n'
    http = parse(text, "x.toml", tmp_path).http
    assert http.cors_origins == ("*", "http://[::1]:3000")
    assert http.viewer_dir == (tmp_path / "ohif").resolve()  # relative to the config file, as data_dir
    with pytest.raises(ConfigError, match="cors_origins"):
        parse('[http]\ncors_origins = ["https://a.example.org/path"]\n', "x.toml", tmp_path)
