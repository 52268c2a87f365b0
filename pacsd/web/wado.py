"""WADO-RS (PS3.18 10.4) under ``/dicomweb/studies``: instances, metadata,
frames and bulk data.

- ``GET /studies/{study}[/series/{series}[/instances/{instance}]]``:
  ``multipart/related; type="application/dicom"``, each part a Part 10
  file labelled with its transfer syntax; an instance also as single-part
  ``application/dicom``. ``transfer-syntax=*`` sends as stored, a UID
  converts (the send plan), none named means Explicit VR Little Endian
  (PS3.18 8.7.3.5.2). Every instance's plan is decided before the status
  line and the first part is prepared before it too: if any instance
  cannot go as asked the answer is 406 naming it, not a partial body. A
  later conversion that fails all the same (a codec error) aborts the
  connection: the client sees a truncated body, never a silently short one.
- ``/metadata`` at each level: ``application/dicom+json``, binary values as
  absolute ``BulkDataURI``; each instance's JSON comes from a cache
  (:mod:`pacsd.services.metadata`); ``ETag`` and ``304`` on ``If-None-Match``.
- ``/frames/{n[,m...]}``: native frames as ``application/octet-stream``, or
  as stored when asked for ``image/jpeg``, ``image/jls`` or ``image/jp2``
  and the instance is stored in a syntax of that type. A frame number the
  instance lacks (0, past the last) is 400 naming it: the request is wrong,
  not the resource missing.
- ``/bulkdata/{tag[/item/tag...]}``: what metadata's BulkDataURIs name.

Unknown study, series or instance: 404; an invalid UID in the path: 400.
SQL, file reads and conversions run off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future

from pydicom import uid as ts
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from pacsd import log
from pacsd.domain.errors import NotSendable
from pacsd.domain.outcomes import StoredInstance
from pacsd.domain.part10 import FileRegion, meta_for
from pacsd.services.archive import Archive
from pacsd.services.metadata import absolute, is_pixel_path
from pacsd.services.retrieve import Outgoing
from pacsd.web import statuses, urls
from pacsd.web.accept import Chosen, MediaType, negotiate
from pacsd.web.multipart import encode_parts
from pacsd.web.paths import stored_instances
from pacsd.web.statuses import NOT_ACCEPTABLE, NOT_MODIFIED, HttpError

_log = log.get("pacsd.wado")

STUDY = "/dicomweb/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"

DICOM = MediaType("application", "dicom")
DICOM_JSON = "application/dicom+json"
OCTET = "application/octet-stream"
CRLF = b"\r\n"
CHUNK = 1024 * 1024  # a FileRegion goes out in reads of this size

# Compressed frame media types (PS3.18 table 8.7.3-5) and the stored
# syntaxes whose frames they are, sent as stored.
FRAME_TYPES: dict[str, tuple[str, ...]] = {
    "image/jpeg": (ts.JPEGBaseline8Bit, ts.JPEGExtended12Bit, ts.JPEGLossless, ts.JPEGLosslessSV1),
    "image/jls": (ts.JPEGLSLossless, ts.JPEGLSNearLossless),
    "image/jp2": (ts.JPEG2000Lossless, ts.JPEG2000),
}


def related(part_type: str, **params: str) -> MediaType:
    return MediaType("multipart", "related", (("type", part_type), *params.items()))


def dicomweb_base(request: Request) -> str:
    """The absolute URL of ``/dicomweb`` as the client reached it."""
    return urls.request_base(request) + "/dicomweb"


def frame_numbers(text: str) -> list[int]:
    """``1,3,5`` as [1, 3, 5]; 400 naming what is not a frame number."""
    numbers = []
    for item in text.split(","):
        if not item.strip().isdigit():
            raise HttpError(statuses.BAD_REQUEST, f"frame list {text!r}: {item!r} is not a frame number", frames=text)
        numbers.append(int(item))
    return numbers


def not_acceptable(accept: str | None, offers: Sequence[MediaType]) -> HttpError:
    shown = ", ".join(str(offer) for offer in offers)
    return HttpError(NOT_ACCEPTABLE, f"Accept {accept or '*/*'!r}: this resource is available as {shown}")


class WadoRoutes:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def routes(self) -> list[Route]:
        return [
            Route(STUDY, self.retrieve, methods=["GET"]),
            Route(SERIES, self.retrieve, methods=["GET"]),
            Route(INSTANCE, self.retrieve, methods=["GET"]),
            Route(STUDY + "/metadata", self.metadata, methods=["GET"]),
            Route(SERIES + "/metadata", self.metadata, methods=["GET"]),
            Route(INSTANCE + "/metadata", self.metadata, methods=["GET"]),
            Route(INSTANCE + "/frames/{frames}", self.frames, methods=["GET"]),
            Route(INSTANCE + "/bulkdata/{path:path}", self.bulkdata, methods=["GET"]),
        ]

    # -- instances ---------------------------------------------------------------

    async def retrieve(self, request: Request) -> Response:
        accept = request.headers.get("accept")
        offers = [related("application/dicom")] + ([DICOM] if "instance" in request.path_params else [])
        chosen = negotiate(accept, offers)
        if chosen is None:
            raise not_acceptable(accept, offers)
        instances = await stored_instances(self.archive, request)
        for instance in instances:
            reason = self.archive.send_refusal(instance, accepted(chosen, instance))
            if reason:
                raise HttpError(
                    NOT_ACCEPTABLE, f"instance {instance.sop_uid}: {reason}", sop_instance_uid=instance.sop_uid
                )
        first = await self._outgoing(instances[0], chosen)
        if chosen.media_type.essence == DICOM.essence:
            body = b"".join([_meta(instances[0], first), *await run_in_threadpool(_whole, first.data)])
            return Response(body, media_type=f"application/dicom; transfer-syntax={first.syntax}")
        boundary = uuid.uuid4().hex
        media = f'multipart/related; type="application/dicom"; boundary={boundary}'
        return StreamingResponse(self._parts(instances, chosen, first, boundary), media_type=media)

    async def _outgoing(self, instance: StoredInstance, chosen: Chosen) -> Outgoing:
        return await _awaited(await self._prepare(instance, chosen), instance)

    async def _prepare(self, instance: StoredInstance, chosen: Chosen) -> Future[Outgoing]:
        # As stored, prepare_send reads the file: not on the event loop.
        return await run_in_threadpool(self.archive.prepare_send, instance, accepted(chosen, instance))

    async def _parts(
        self, instances: list[StoredInstance], chosen: Chosen, first: Outgoing, boundary: str
    ) -> AsyncIterator[bytes]:
        delimiter = b"--" + boundary.encode()
        rest = iter(instances[1:])
        pending: deque[tuple[StoredInstance, Future[Outgoing]]] = deque()

        async def refill() -> None:
            # The next instances are prepared (converted, in the pool) while this one goes out.
            while len(pending) < self.archive.prepare_ahead:
                instance = next(rest, None)
                if instance is None:
                    return
                pending.append((instance, await self._prepare(instance, chosen)))

        current: tuple[StoredInstance, Outgoing] | None = (instances[0], first)
        await refill()
        while current is not None:
            instance, outgoing = current
            head = f"Content-Type: application/dicom; transfer-syntax={outgoing.syntax}\r\n".encode()
            yield delimiter + CRLF + head + CRLF + _meta(instance, outgoing)
            async for chunk in _chunks(outgoing.data):
                yield chunk
            yield CRLF
            current = None
            if pending:
                instance, future = pending.popleft()
                await refill()
                current = (instance, await _awaited(future, instance, started=True))
        yield delimiter + b"--" + CRLF

    # -- metadata ----------------------------------------------------------------

    async def metadata(self, request: Request) -> Response:
        accept = request.headers.get("accept")
        offers = [MediaType("application", "dicom+json"), MediaType("application", "json")]
        if negotiate(accept, offers) is None:
            raise not_acceptable(accept, offers)
        instances = await stored_instances(self.archive, request)
        base = dicomweb_base(request)
        stamp = await run_in_threadpool(self.archive.metadata_etag, instances)
        # The body depends on the base URL too (BulkDataURIs): so does its tag.
        etag = '"' + hashlib.sha256(f"{stamp} {base}".encode()).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Vary": "Accept, Forwarded, X-Forwarded-Host, X-Forwarded-Proto"}
        if _matches(request.headers.get("if-none-match", ""), etag):
            return Response(status_code=NOT_MODIFIED, headers=headers)
        try:
            objects = await run_in_threadpool(self.archive.metadata, instances)
        except NotSendable as exc:  # a lost or damaged file
            status, problem = statuses.not_sendable(exc)
            raise HttpError(status, str(problem["error"])) from None
        text = absolute("[" + ",".join(objects) + "]", base)
        return Response(text.encode(), media_type=DICOM_JSON, headers=headers)

    # -- frames and bulk data ---------------------------------------------------------

    async def frames(self, request: Request) -> Response:
        numbers = frame_numbers(request.path_params["frames"])
        [instance] = await stored_instances(self.archive, request)
        chosen, native = self._pixel_offer(request, instance, pixel=True)
        frames = await self._blocking(self.archive.frames, instance, numbers, native)
        return _related(chosen, instance, native, frames)

    async def bulkdata(self, request: Request) -> Response:
        path = request.path_params["path"]
        [instance] = await stored_instances(self.archive, request)
        pixel = is_pixel_path(path)
        chosen, native = self._pixel_offer(request, instance, pixel=pixel)
        values = await self._blocking(self.archive.bulkdata, instance, path, native)
        return _related(chosen, instance, native, values)

    def _pixel_offer(self, request: Request, instance: StoredInstance, pixel: bool) -> tuple[Chosen, bool]:
        """What the client takes of *instance*'s pixel data: native
        octet-stream (Explicit VR LE) or the stored compressed type."""
        stored = instance.transfer_syntax
        offers = [related(OCTET, **{"transfer-syntax": ts.ExplicitVRLittleEndian}), related(OCTET)]
        if pixel:
            offers += [related(t, **{"transfer-syntax": stored}) for t, uids in FRAME_TYPES.items() if stored in uids]
        accept = request.headers.get("accept")
        chosen = negotiate(accept, offers)
        if chosen is None:
            raise not_acceptable(accept, offers[:1] + offers[2:])
        native = chosen.media_type.param("type") == OCTET
        return chosen, native

    async def _blocking(self, work: object, *args: object) -> list[bytes]:
        assert callable(work)
        try:
            result: list[bytes] = await run_in_threadpool(work, *args)
        except NotSendable as exc:
            status, body = statuses.not_sendable(exc)
            raise HttpError(status, str(body["error"])) from None
        return result


def accepted(chosen: Chosen, instance: StoredInstance) -> list[str]:
    """The syntaxes the client takes *instance* in, its preference first."""
    syntaxes: list[str] = []
    for wanted in chosen.transfer_syntaxes or (None,):
        syntax = instance.transfer_syntax if wanted == "*" else (wanted or ts.ExplicitVRLittleEndian)
        if syntax not in syntaxes:
            syntaxes.append(syntax)
    return syntaxes


async def _awaited(future: Future[Outgoing], instance: StoredInstance, started: bool = False) -> Outgoing:
    try:
        return await asyncio.wrap_future(future)
    except NotSendable as exc:
        if started:  # the status line is gone: only aborting the body tells the client
            _log.warning("wado_part_failed", sop_uid=instance.sop_uid, reason=str(exc))
            raise
        status, body = statuses.not_sendable(exc)
        message = f"instance {instance.sop_uid}: {body['error']}"
        raise HttpError(status, message, sop_instance_uid=instance.sop_uid) from None


def _meta(instance: StoredInstance, outgoing: Outgoing) -> bytes:
    return meta_for(instance.sop_class_uid, instance.sop_uid, outgoing.syntax)


async def _chunks(data: memoryview | FileRegion | bytes) -> AsyncIterator[bytes]:
    if not isinstance(data, FileRegion):
        yield bytes(data)
        return
    with open(data.path, "rb") as file:
        await run_in_threadpool(file.seek, data.offset)
        left = data.length
        while left > 0:
            chunk = await run_in_threadpool(file.read, min(CHUNK, left))
            if not chunk:
                raise OSError(f"{data.path}: shorter than its dataset")
            left -= len(chunk)
            yield chunk


def _whole(data: memoryview | FileRegion | bytes) -> list[bytes]:
    if not isinstance(data, FileRegion):
        return [bytes(data)]
    with open(data.path, "rb") as file:
        file.seek(data.offset)
        return [file.read(data.length)]


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _related(chosen: Chosen, instance: StoredInstance, native: bool, values: list[bytes]) -> Response:
    part_type = chosen.media_type.param("type") or OCTET
    syntax = ts.ExplicitVRLittleEndian if native else instance.transfer_syntax
    label = f"{part_type}; transfer-syntax={syntax}"
    boundary = uuid.uuid4().hex
    body = b"".join(encode_parts(((label, value) for value in values), boundary))
    return Response(body, media_type=f'multipart/related; type="{part_type}"; boundary={boundary}')
