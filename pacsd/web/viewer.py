"""The OHIF viewer at ``/viewer/``, configured for pacsd's own ``/dicomweb``.

``scripts/install-viewer`` puts the prebuilt ``dist/`` of the npm package
``@ohif/app`` in a directory (``[http] viewer_dir``, default
``<data_dir>/viewer``) and runs :func:`rebase` on it: that build assumes
it is served at ``/`` (absolute ``/…`` links in ``index.html`` and webpack's
public path ``"/"`` compiled into its bundles), so the links are rewritten
to :data:`MOUNT` once, at install, rather than on every request.

Served here: the files as they are, ``app-config.js`` generated per
request (the DICOMweb roots are absolute URLs built like RetrieveURLs, so
they honour ``Forwarded`` headers), and ``index.html`` for any other path
without a file extension, since OHIF is a single-page app whose routes
(``/viewer/viewer?StudyInstanceUIDs=…``) are resolved in the browser.
No directory, or one without ``index.html``: no routes, and ``/viewer/`` is
a 404 like any unknown path.
"""

from __future__ import annotations

import json
import mimetypes
import re
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from pacsd.web import urls

MOUNT = "/viewer/"
DICOMWEB = "/dicomweb"
INSTALLED_MARK = ".pacsd-ohif"  # written by scripts/install-viewer after rebase: holds the OHIF version
_PUBLIC_PATH = '__webpack_require__.p = "/";'  # how the OHIF 3 build spells it (checked by rebase)

# Browsers refuse to compile WebAssembly streamed with another type.
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")


def installed(directory: Path) -> str | None:
    """The OHIF version installed in *directory*, None if none is."""
    try:
        version = (directory / INSTALLED_MARK).read_text().strip()
    except OSError:
        return None
    return version if (directory / "index.html").is_file() else None


def rebase(dist: Path) -> int:
    """Rewrite a freshly unpacked OHIF ``dist/`` built for ``/`` to be
    served at :data:`MOUNT`; returns how many files changed. Raises
    ValueError for a build this does not recognise (no public path found),
    rather than installing a viewer that loads none of its chunks."""
    changed = 0
    for path in [dist / "index.html", dist / "manifest.json", *dist.glob("*.css")]:
        text = path.read_text(encoding="utf-8")
        # Root-relative links, not "//host": attribute values (and
        # window.PUBLIC_URL="/") in index.html, icons in the manifest, fonts
        # in the style sheets.
        new = re.sub(r'="/(?!/)', f'="{MOUNT}', text) if path.suffix == ".html" else text
        new = re.sub(r'"/(?=assets/)', f'"{MOUNT}', new)
        new = re.sub(r"url\(/(?!/)", f"url({MOUNT}", new)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
    bundles = 0
    for path in dist.glob("*.js"):
        data = path.read_bytes()
        if _PUBLIC_PATH.encode() in data:
            path.write_bytes(data.replace(_PUBLIC_PATH.encode(), f'__webpack_require__.p = "{MOUNT}";'.encode()))
            bundles += 1
    if not bundles or f'PUBLIC_URL="{MOUNT}"' not in (dist / "index.html").read_text(encoding="utf-8"):
        raise ValueError(f"{dist}: not an OHIF build served at / (no webpack public path or PUBLIC_URL found)")
    return changed + bundles


def app_config(dicomweb: str) -> str:
    """OHIF's ``window.config``: one DICOMweb data source, pacsd at *dicomweb*.

    Keys as in OHIF 3's own ``app-config.js``; what pacsd does not serve is
    not asked for: thumbnails come from WADO-RS frames (``wadors``), not
    ``/thumbnail``, and there is no static-WADO layout or WADO-URI.
    """
    source: dict[str, Any] = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "pacsd",
        "configuration": {
            "friendlyName": "pacsd",
            "name": "pacsd",
            "qidoRoot": dicomweb,
            "wadoRoot": dicomweb,
            "qidoSupportsIncludeField": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "staticWado": False,
            "singlepart": "bulkdata,video",
            "bulkDataURI": {"enabled": True},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {
        "routerBasename": MOUNT.rstrip("/"),
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": "pacsd",
        "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


class _SinglePage(StaticFiles):
    """The viewer's files; ``index.html`` for a path that names no file and
    has no extension (a route of the app, not a missing chunk)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or "." in path.rsplit("/", 1)[-1]:
                raise
        return FileResponse(Path(str(self.directory)) / "index.html", headers={"Cache-Control": "no-cache"})


class ViewerRoutes:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def routes(self) -> list[BaseRoute]:
        if self.directory is None or installed(self.directory) is None:
            return []
        base = MOUNT.rstrip("/")
        return [
            Route(base, self.to_mount, methods=["GET", "HEAD"]),
            Route(MOUNT + "app-config.js", self.config, methods=["GET", "HEAD"]),
            Mount(base, app=_SinglePage(directory=self.directory, html=True)),
        ]

    async def to_mount(self, request: Request) -> Response:
        return RedirectResponse(MOUNT + (f"?{request.url.query}" if request.url.query else ""), 308)

    async def config(self, request: Request) -> Response:
        body = app_config(urls.request_base(request) + DICOMWEB)
        return Response(body, media_type="text/javascript", headers={"Cache-Control": "no-cache"})
