"""The bundled OHIF viewer in a real headless Chromium, and CORS on
/dicomweb, against a real `pacsd serve`.

The browser test needs the viewer installed (`scripts/install-viewer`,
which `scripts/test` runs) and Debian's chromium; without the viewer it
is skipped, saying so. The CORS and viewer-file tests run regardless.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydicom.dataset import Dataset

from pacsd.testing import synth
from pacsd.testing.peers import free_port, pacsd_command
from pacsd.web.viewer import INSTALLED_MARK, installed
from tests.e2e.conftest import REPO, Server

VIEWER_DIR = Path(os.environ.get("PACSD_VIEWER_DIR", REPO / "var" / "viewer"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SLICES = 5
SIDE = 256
RENDER_TIMEOUT_MS = 90_000  # a cold OHIF on 2 busy cores: 17 MB of JavaScript to compile


def phantom_series(count: int = SLICES, side: int = SIDE) -> list[Dataset]:
    """A CT series that looks like one: an elliptical body of soft tissue
    (40 HU) in air (-1000), a bright round spine (700) and two dark lungs
    (-800) that shrink along the slices, with real geometry (position,
    orientation, spacing) and a soft-tissue window, as modalities send."""
    first = synth.ct(instance_number=1, pixel_bytes=2)
    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    y, x = np.mgrid[0:side, 0:side].astype(np.float64) / side - 0.5
    out = []
    for n in range(count):
        hu = np.full((side, side), -1000.0)
        hu[(x / 0.45) ** 2 + (y / 0.32) ** 2 <= 1] = 40.0
        lung = 0.12 - 0.01 * n
        hu[((x + 0.18) / lung) ** 2 + (y / (lung * 1.6)) ** 2 <= 1] = -800.0
        hu[((x - 0.18) / lung) ** 2 + (y / (lung * 1.6)) ** 2 <= 1] = -800.0
        hu[x**2 + (y - 0.2) ** 2 <= 0.05**2] = 700.0
        hu += 10 * np.sin(x * 40) * np.cos(y * 40)  # texture, so no flat region is exactly flat
        ds = synth.ct(
            instance_number=n + 1,
            study_uid=study,
            series_uid=series,
            patient_id="VIEWER1",
            patient_name="Viewer^Phantom",
            pixel_bytes=2,
            StudyDescription="Viewer phantom",
            SeriesDescription="Axial phantom",
        )
        ds.Rows = ds.Columns = side
        ds.BitsStored, ds.HighBit = 12, 11
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelSpacing = [0.8, 0.8]
        ds.SliceThickness = 2.5
        ds.ImagePositionPatient = [-102.4, -102.4, -2.5 * n]
        ds.SliceLocation = -2.5 * n
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = first.SOPInstanceUID + ".1"
        ds.PixelData = np.clip(hu + 1024, 0, 4095).astype("<u2").tobytes()
        out.append(ds)
    return out


def store(server: Server, datasets: list[Dataset], where: Path) -> None:
    where.mkdir()
    files = [synth.write(ds, where / f"{n:03}.dcm") for n, ds in enumerate(datasets)]
    server.storescu(*files)


def http_server(tmp_path: Path, port: int = 0, **http: Any) -> Server:
    """A pacsd with its HTTP server on (at *port*, or a free one); *http*
    goes into its ``[http]`` table."""
    port = port or free_port()
    lines = [f"port = {port}"] + [f"{key} = {json.dumps(value)}" for key, value in http.items()]
    server = Server(tmp_path, extra_toml="[http]\n" + "\n".join(lines) + "\n")
    server.http = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return server


def base(server: Server) -> str:
    return server.http  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def viewer_server(tmp_path: Path) -> Iterator[Server]:
    if installed(VIEWER_DIR) is None:
        pytest.skip(f"OHIF viewer not installed in {VIEWER_DIR}: run scripts/install-viewer (scripts/test does)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium (scripts/test does)")
    # The page's own origin may read /dicomweb from the other name of
    # this host (a cross-origin request, preflighted), no other origin.
    port = free_port()
    server = http_server(tmp_path, port, viewer_dir=str(VIEWER_DIR), cors_origins=[f"http://127.0.0.1:{port}"])
    yield server.start()
    server.stop()


def test_ohif_renders_a_stored_ct_series(viewer_server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    series = phantom_series()
    store(viewer_server, series, tmp_path / "in")
    study = series[0].StudyInstanceUID
    origin = base(viewer_server)
    answers: list[tuple[str, str, int]] = []
    failed: list[str] = []
    console: list[str] = []
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    with sync_playwright() as pw:
        # A fresh profile (playwright passes it as --user-data-dir); never
        # playwright's own browser build: Debian's chromium.
        browser = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 800}
        )
        try:
            page = browser.new_page()
            page.on("response", lambda r: answers.append((r.request.method, r.url, r.status)))
            page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url}: {r.failure}"))
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(f"{origin}/viewer/viewer?StudyInstanceUIDs={study}")
            # Cornerstone draws into a <canvas> in the viewport element; wait
            # until it holds an image, not the black of an empty viewport.
            canvas = page.locator(".cornerstone-viewport-element canvas").first
            canvas.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
            page.wait_for_function(_DRAWN, timeout=RENDER_TIMEOUT_MS)
            page.screenshot(path=str(tmp_path / "ohif.png"))  # kept: what a person would see
            canvas.screenshot(path=str(tmp_path / "ohif-viewport.png"))
            # What cornerstone drew, without the overlays (text, banners)
            # that a screenshot of the region would count as content.
            drawn = base64.b64decode(page.evaluate(_CANVAS_PNG).split(",", 1)[1])
            (tmp_path / "ohif-canvas.png").write_bytes(drawn)
            viewer_answers, viewer_failed = list(answers), list(failed)
            # CORS from a real browser: this page's origin is allowed on the
            # host's other name (preflighted, If-None-Match is not a simple
            # header); from a page of any other origin the browser refuses.
            other = origin.replace("127.0.0.1", "localhost")
            cross = page.evaluate(_CROSS_FETCH, f"{other}/dicomweb/studies?PatientID=VIEWER1")
            page.goto(f"{other}/viewer/")
            refused = page.evaluate(_CROSS_FETCH, f"{origin}/dicomweb/studies?PatientID=VIEWER1")
        finally:
            browser.close()
    shutil.rmtree(profile, ignore_errors=True)
    gray = _decode_png(drawn)[..., :3].mean(axis=2)
    # In the soft-tissue window (40/400) the phantom is black air and lungs,
    # mid-grey tissue and a white spine: all three, in sizeable shares. A
    # blank viewport has one level; noise or a wrong window lacks a band.
    share = {
        "black": float((gray < 30).mean()),
        "grey": float(((gray > 80) & (gray < 180)).mean()),
        "white": float((gray > 230).mean()),
    }
    assert share["black"] > 0.2 and share["grey"] > 0.1 and share["white"] > 0.003, (share, console[-20:])
    assert gray.std() > 20, f"viewport looks blank (std {gray.std():.1f}); console: {console[-20:]}"
    dicomweb = [a for a in viewer_answers if "/dicomweb/" in a[1]]
    assert any(url.startswith(f"{origin}/dicomweb/studies?") for _, url, _ in dicomweb), dicomweb  # QIDO
    assert any(url.endswith("/metadata") for _, url, _ in dicomweb), dicomweb  # WADO-RS metadata
    assert any("/frames/" in url for _, url, _ in dicomweb), dicomweb  # WADO-RS pixels
    bad = [a for a in dicomweb if not 200 <= a[2] < 300]
    assert not bad, f"DICOMweb answers not 2xx: {bad}"
    assert not viewer_failed, viewer_failed
    missing = [a for a in viewer_answers if a[2] == 404]
    assert not missing, f"viewer files not found: {missing}"
    assert cross["status"] == 200 and cross["studies"] == [study], cross
    assert "error" in refused, refused


# A cross-origin fetch from the page: its status and the study UIDs it
# read, or the error the browser raised.
_CROSS_FETCH = """async (url) => {
  try {
    const r = await fetch(url, {headers: {'Accept': 'application/dicom+json', 'If-None-Match': '"x"'}});
    const body = await r.json();
    return {status: r.status, studies: body.map(s => s['0020000D'].Value[0])};
  } catch (e) { return {error: String(e)}; }
}"""

# True once the first viewport canvas holds more than one colour.
_DRAWN = """() => {
  const c = document.querySelector('.cornerstone-viewport-element canvas');
  if (!c || !c.width || !c.height) return false;
  const g = c.getContext('2d') || null;
  let data;
  if (g) { data = g.getImageData(0, 0, c.width, c.height).data; }
  else {
    const copy = document.createElement('canvas');
    copy.width = c.width; copy.height = c.height;
    copy.getContext('2d').drawImage(c, 0, 0);
    data = copy.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  }
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4 * 97) { seen.add(data[i]); if (seen.size > 8) return true; }
  return false;
}"""


# The first viewport canvas as a PNG data URL (a 2D canvas, or a copy).
_CANVAS_PNG = """() => {
  const c = document.querySelector('.cornerstone-viewport-element canvas');
  if (c.getContext('2d')) return c.toDataURL('image/png');
  const copy = document.createElement('canvas');
  copy.width = c.width; copy.height = c.height;
  copy.getContext('2d').drawImage(c, 0, 0);
  return copy.toDataURL('image/png');
}"""


def _decode_png(data: bytes) -> np.ndarray[Any, Any]:
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(data)).convert("RGB"), dtype=np.float64)


def fake_viewer(where: Path) -> Path:
    """A directory installed as scripts/install-viewer leaves one, with a
    page and a few files instead of OHIF: what pacsd's serving does."""
    where.mkdir()
    (where / "index.html").write_text("<html>the viewer page</html>")
    (where / "app.bundle.js").write_text("console.log('bundle')")
    (where / "codec.wasm").write_bytes(b"\0asm\1\0\0\0")
    (where / "assets").mkdir()
    (where / "assets" / "logo.svg").write_text("<svg/>")
    (where / INSTALLED_MARK).write_text("0.0-test\n")
    return where


def test_viewer_files_routes_and_config(tmp_path: Path) -> None:
    viewer = fake_viewer(tmp_path / "viewer")
    (tmp_path / "secret.txt").write_text("not for the web")
    server = http_server(tmp_path, viewer_dir=str(viewer)).start()
    try:
        with httpx.Client(base_url=base(server)) as http:
            moved = http.get("/viewer?x=1")
            assert moved.status_code == 308 and moved.headers["location"] == "/viewer/?x=1"
            for path in ["/viewer/", "/viewer/viewer?StudyInstanceUIDs=1.2.3", "/viewer/studies/1.2/x"]:
                page = http.get(path)  # the single-page app's own routes: its page
                assert page.status_code == 200 and page.text == "<html>the viewer page</html>", path
            logo = http.get("/viewer/assets/logo.svg")
            assert logo.text == "<svg/>"
            assert (
                http.get("/viewer/assets/logo.svg", headers={"If-None-Match": logo.headers["etag"]}).status_code == 304
            )
            wasm = http.get("/viewer/codec.wasm")
            assert wasm.headers["content-type"] == "application/wasm"  # else browsers refuse to compile it
            # A missing chunk is a 404, not the page (which would fail as JavaScript).
            assert http.get("/viewer/1234.bundle.js").status_code == 404
            assert http.get("/viewer/%2e%2e/secret.txt").status_code == 404
            assert "not for the web" not in http.get("/viewer/../secret.txt").text
            config = http.get("/viewer/app-config.js")
            assert config.status_code == 200 and config.headers["content-type"].startswith("text/javascript")
            assert f'"wadoRoot": "{base(server)}/dicomweb"' in config.text
            assert f'"qidoRoot": "{base(server)}/dicomweb"' in config.text
            assert '"thumbnailRendering": "wadors"' in config.text and '"routerBasename": "/viewer"' in config.text
            proxied = http.get("/viewer/app-config.js", headers={"X-Forwarded-Host": "pacs.example.org"})
            assert '"wadoRoot": "http://pacs.example.org/dicomweb"' in proxied.text
            assert http.get("/dicomweb/studies").status_code == 200  # DICOMweb unaffected
    finally:
        server.stop()
    served = {e["path"] for e in server.events("http_request")}
    assert "/viewer/app-config.js" in served  # the access log covers the viewer too


def test_no_viewer_installed_is_a_404(tmp_path: Path) -> None:
    empty = tmp_path / "viewer"
    empty.mkdir()
    (empty / "index.html").write_text("half an install: no mark")
    server = http_server(tmp_path, viewer_dir=str(empty)).start()
    try:
        with httpx.Client(base_url=base(server)) as http:
            answer = http.get("/viewer/")
            assert answer.status_code == 404 and "error" in answer.json()
            assert http.get("/dicomweb/studies").status_code == 200
    finally:
        server.stop()


ALLOWED = "https://viewer.example.org"


def test_cors_on_dicomweb_for_the_configured_origins(tmp_path: Path) -> None:
    viewer = fake_viewer(tmp_path / "viewer")
    server = http_server(tmp_path, cors_origins=[ALLOWED, "http://localhost:3000"], viewer_dir=str(viewer)).start()
    try:
        with httpx.Client(base_url=base(server)) as http:
            preflight = http.options(
                "/dicomweb/studies/1.2.3/metadata",
                headers={
                    "Origin": ALLOWED,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "accept, if-none-match, authorization",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == ALLOWED
            assert "GET" in preflight.headers["access-control-allow-methods"]
            assert "DELETE" in preflight.headers["access-control-allow-methods"]
            assert "if-none-match" in preflight.headers["access-control-allow-headers"].lower()
            search = http.get("/dicomweb/studies", headers={"Origin": ALLOWED})
            assert search.status_code == 200 and search.headers["access-control-allow-origin"] == ALLOWED
            assert "ETag" in search.headers["access-control-expose-headers"]
            assert "origin" in search.headers.get("vary", "").lower()  # caches keep one answer per origin
            # Errors carry the header too, or the browser hides the status.
            missing = http.get("/dicomweb/studies/1.2.3/metadata", headers={"Origin": ALLOWED})
            assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == ALLOWED
            # Another origin: its preflight refused, a simple request answered
            # without the header (the browser then withholds the body).
            refused = http.options(
                "/dicomweb/studies",
                headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"},
            )
            assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
            other = http.get("/dicomweb/studies", headers={"Origin": "https://evil.example.com"})
            assert "access-control-allow-origin" not in other.headers
            # Only /dicomweb: the viewer's own files stay same-origin.
            page = http.get("/viewer/", headers={"Origin": ALLOWED})
            assert page.status_code == 200 and "access-control-allow-origin" not in page.headers
    finally:
        server.stop()


def test_cors_is_off_by_default(tmp_path: Path) -> None:
    server = http_server(tmp_path).start()
    try:
        with httpx.Client(base_url=base(server)) as http:
            search = http.get("/dicomweb/studies", headers={"Origin": ALLOWED})
            assert search.status_code == 200 and "access-control-allow-origin" not in search.headers
            preflight = http.options(
                "/dicomweb/studies", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"}
            )
            assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers
    finally:
        server.stop()


@pytest.mark.parametrize(
    "origins, words",
    [
        ('["https://viewer.example.org/"]', ["cors_origins", "'https://viewer.example.org/'"]),
        ('["viewer.example.org"]', ["cors_origins", "not"]),
        ('"*"', ["cors_origins", "expected list"]),
        ("[3]", ["cors_origins", "3"]),
    ],
)
def test_bad_cors_origins_refuse_to_start(tmp_path: Path, origins: str, words: list[str]) -> None:
    server = Server(tmp_path, extra_toml=f"[http]\nport = {free_port()}\ncors_origins = {origins}\n")
    result = subprocess.run(
        pacsd_command("serve", "--config", str(server.config)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and all(w in line for w in words), line
