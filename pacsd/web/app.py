"""The ASGI app: routes, the error table applied, one log line per request.

Every answer, errors included, is JSON: a refusal by the table in
:mod:`pacsd.web.statuses`, a bug as 500 naming only the exception's type
(its traceback goes to the log), and the server serves on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pacsd import log
from pacsd.domain.errors import Refusal
from pacsd.domain.limits import MiB
from pacsd.services.archive import Archive
from pacsd.web import statuses
from pacsd.web.cors import DicomwebCors
from pacsd.web.delete import DeleteRoutes
from pacsd.web.qido import QidoRoutes
from pacsd.web.rendered import RenderedRoutes
from pacsd.web.stow import StowRoutes
from pacsd.web.viewer import ViewerRoutes
from pacsd.web.wado import WadoRoutes
from pacsd.web.worklist import WorklistRoutes

MAX_BODY_BYTES = 16 * MiB  # a worklist POST; thousands of items fit


def build_app(
    archive: Archive,
    max_body_bytes: int = MAX_BODY_BYTES,
    cors_origins: Sequence[str] = (),
    viewer_dir: Path | None = None,
) -> Starlette:
    cors = [Middleware(DicomwebCors, origins=cors_origins)] if cors_origins else []
    return Starlette(
        routes=[
            *WorklistRoutes(archive, max_body_bytes).routes(),
            *QidoRoutes(archive).routes(),
            *WadoRoutes(archive).routes(),
            *StowRoutes(archive).routes(),
            *RenderedRoutes(archive).routes(),
            *DeleteRoutes(archive).routes(),
            *ViewerRoutes(viewer_dir).routes(),
        ],
        middleware=[Middleware(Guard), *cors],
        exception_handlers={
            statuses.HttpError: _http_error,
            Refusal: _refusal,
            HTTPException: _starlette_error,  # no such route, method not allowed
        },
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, statuses.HttpError)
    return JSONResponse(exc.body(), exc.status)


async def _refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    status, body = statuses.refusal(exc)
    return JSONResponse(body, status)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)


class Guard:
    """Outermost of our middleware: logs ``http_request`` for every
    request and turns an exception nothing handled into a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = sent = 0

        async def sending(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        logger = log.get()
        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            logger.error("http_failed", method=scope["method"], path=scope["path"], exc_info=True)
            if not status:  # once an answer has started, uvicorn closes the connection
                code, body = statuses.internal(exc)
                await JSONResponse(body, code)(scope, receive, sending)
        finally:
            logger.info("http_request", method=scope["method"], route=route_template(scope), path=scope["path"],
                        status=status, ms=log.ms_since(start), bytes=sent)  # fmt: skip


def route_template(scope: Scope) -> str:
    """The path with the route's parameters named, not valued
    (``/dicomweb/studies/{study}/metadata``): what access logs group by.
    The router leaves them in the scope; '' when no route matched."""
    if "endpoint" not in scope:
        return ""
    template = scope["path"]
    for name, value in scope.get("path_params", {}).items():
        template = template.replace(f"/{value}", "/{" + name + "}", 1)
    return str(template)
