"""CORS on ``/dicomweb`` for viewers served from another origin
(``[http] cors_origins``; empty, the default, sends no CORS headers).

Starlette's CORS middleware does the protocol (preflight ``OPTIONS``
answered before routing, ``Vary: Origin``, a disallowed origin's preflight
refused with 400); this only limits it to the DICOMweb paths, so the
viewer's own files and anything added later stay same-origin.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/dicomweb"
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
# Read by DICOMweb clients: conditional metadata, truncated QIDO results,
# where a STOW-RS or worklist POST put what it made.
EXPOSED = ("ETag", "Warning", "Location", "Content-Location", "Content-Length")
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight answer


class DicomwebCors:
    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=list(METHODS),
            allow_headers=["*"],  # Accept, Content-Type, If-None-Match, Authorization...
            expose_headers=list(EXPOSED),
            max_age=PREFLIGHT_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
