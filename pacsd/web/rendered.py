"""WADO-RS rendered resources and thumbnails (PS3.18 8.3.5, 10.4.1.1.3,
10.7): a frame as a JPEG (the default) or PNG a browser shows.

- ``.../instances/{instance}/rendered``: its first frame;
  ``.../instances/{instance}/frames/{n}/rendered``: frame *n* (one number;
  0 or past the last is 400).
- ``/studies/{study}/rendered``, ``.../series/{series}/rendered``: the
  representative instance's first frame: the middle image (by Instance
  Number) of the first series (by Series Number) holding an image SOP class
  (:func:`pacsd.services.rendering.representative`).
- The same paths ending ``/thumbnail``: fitted into 128 x 128, aspect kept;
  a ``viewport`` is accepted and ignored.

Parameters: ``quality`` (1-100, JPEG; default 90), ``viewport=vw,vh`` or
``vw,vh,sx,sy,sw,sh`` (fit into vw x vh, aspect kept, up or down; the
source region cropped first), ``window=center,width[,function]``
(``linear``, ``linear-exact``, ``sigmoid``; greyscale only);
``annotation``, ``charset`` and ``iccprofile`` are accepted and ignored.
Anything else, a repeated or a malformed one, is 400 naming it. An Accept
other than ``image/jpeg``, ``image/png``, ``image/*`` or ``*/*`` is 406.

Unknown study, series or instance: 404; an invalid UID in the path: 400;
an instance without pixel data: 400 (as ``/frames``: the request asks for
what the instance cannot have). Rendering runs in the conversion pool's
processes, never on the event loop; nothing is cached.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pacsd.domain.errors import NotSendable
from pacsd.services.archive import Archive
from pacsd.services.rendering import JPEG, MAX_SIDE, PNG, Rendering, Viewport, Window
from pacsd.web import statuses
from pacsd.web.accept import MediaType, negotiate
from pacsd.web.paths import stored_instances
from pacsd.web.statuses import BAD_REQUEST, NOT_ACCEPTABLE, HttpError

STUDY = "/dicomweb/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"
FRAME = INSTANCE + "/frames/{frame}"

OFFERS = (MediaType("image", "jpeg"), MediaType("image", "png"))
IGNORED = frozenset(("annotation", "charset", "iccprofile"))
FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "linear_exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


class RenderedRoutes:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def routes(self) -> list[Route]:
        def route(path: str, thumbnail: bool) -> Route:
            async def endpoint(request: Request) -> Response:
                return await self.rendered(request, thumbnail)

            return Route(path, endpoint, methods=["GET"])

        return [
            route(base + ("/thumbnail" if thumbnail else "/rendered"), thumbnail)
            for base in (STUDY, SERIES, INSTANCE, FRAME)
            for thumbnail in (False, True)
        ]

    async def rendered(self, request: Request, thumbnail: bool) -> Response:
        accept = request.headers.get("accept")
        chosen = negotiate(accept, OFFERS)
        if chosen is None:
            shown = ", ".join(str(offer) for offer in OFFERS)
            raise HttpError(NOT_ACCEPTABLE, f"Accept {accept!r}: rendered images are available as {shown}")
        asked = parameters(request.query_params.multi_items(), chosen.media_type.essence, thumbnail)
        frame = frame_number(request.path_params.get("frame", "1"))
        instances = await stored_instances(self.archive, request)
        instance = instances[0]
        if "instance" not in request.path_params:
            study = request.path_params["study"]
            instance = await run_in_threadpool(self.archive.representative, instances, study)
        future = await run_in_threadpool(self.archive.render, instance, frame, asked)
        try:
            image = await asyncio.wrap_future(future)
        except NotSendable as exc:  # a damaged file, pixels no codec decodes: a Refusal goes to the app's table
            status, body = statuses.not_sendable(exc)
            raise HttpError(status, f"instance {instance.sop_uid}: {body['error']}") from None
        return Response(image, media_type=asked.media_type, headers={"Vary": "Accept"})


def frame_number(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise HttpError(BAD_REQUEST, f"frame {text!r}: a rendered frame is one frame number, from 1", frame=text)
    return int(text)


def parameters(items: Sequence[tuple[str, str]], media_type: str, thumbnail: bool) -> Rendering:
    """The request's query parameters as a :class:`Rendering`; 400 naming a bad one."""
    seen: dict[str, str] = {}
    for name, value in items:
        if name in seen:
            raise _bad(name, f"parameter {name!r} is given more than once")
        if name not in IGNORED and name not in ("quality", "viewport", "window"):
            raise _bad(name, f"unknown parameter {name!r}: rendered resources take quality, viewport and window")
        seen[name] = value
    quality = _quality(seen["quality"]) if "quality" in seen else Rendering.quality
    viewport = _viewport(seen["viewport"]) if "viewport" in seen else None
    window = _window(seen["window"]) if "window" in seen else None
    return Rendering(
        media_type=PNG if media_type == PNG else JPEG,
        quality=quality,
        viewport=None if thumbnail else viewport,
        window=window,
        thumbnail=thumbnail,
    )


def _bad(name: str, message: str) -> HttpError:
    return HttpError(BAD_REQUEST, message, parameter=name)


def _quality(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 100:
        raise _bad("quality", f"quality {text!r}: an integer from 1 to 100")
    return int(text)


def _viewport(text: str) -> Viewport:
    shape = "vw,vh or vw,vh,sx,sy,sw,sh"
    items = [item.strip() for item in text.split(",")]
    if len(items) not in (2, 6) or not all(item.isdigit() and len(item) <= 9 for item in items):
        raise _bad("viewport", f"viewport {text!r}: {shape}, non-negative integers")
    numbers = [int(item) for item in items]
    width, height = numbers[:2]
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise _bad("viewport", f"viewport {text!r}: width and height from 1 to {MAX_SIDE}")
    if len(numbers) == 2:
        return Viewport(width, height)
    sx, sy, sw, sh = numbers[2:]
    if sw < 1 or sh < 1:
        raise _bad("viewport", f"viewport {text!r}: the source region's width and height must be at least 1")
    return Viewport(width, height, (sx, sy, sw, sh))


def _window(text: str) -> Window:
    items = [item.strip() for item in text.split(",")]
    if len(items) not in (2, 3):
        raise _bad("window", f"window {text!r}: center,width,function")
    try:
        center, width = float(items[0]), float(items[1])
    except ValueError:
        raise _bad("window", f"window {text!r}: center and width are numbers") from None
    function = FUNCTIONS.get(items[2].lower()) if len(items) == 3 else "LINEAR"
    if function is None:
        raise _bad("window", f"window {text!r}: the function is linear, linear-exact or sigmoid")
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0 or (function == "LINEAR" and width < 1):
        raise _bad("window", f"window {text!r}: the width must be positive (at least 1 for linear)")
    return Window(center, width, function)
