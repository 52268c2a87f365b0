"""STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies`` and
``POST /dicomweb/studies/{study}``.

The body is ``multipart/related; type="application/dicom"`` (each part a
Part 10 file) or a single ``application/dicom`` file. It is read as it
streams, each part spooled to the data dir's ``tmp/`` past 1 MiB (and
every part once the parts held in memory pass ``PENDING_MEMORY``), and
stored only once the whole body has arrived: a malformed or truncated
body (400) stores nothing. Each part then goes through the C-STORE ingest
(:meth:`Archive.store_upload`), one after the other in a worker thread.

The answer (PS3.18 I, in DICOM JSON): Referenced SOP Sequence for the
stored instances, Failed SOP Sequence with a Failure Reason for the
others, and pacsd's Error Comment (0000,0902) saying why in words; 200
when every instance was stored without warning, 202 when some failed or
warned, 409 when none was stored.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from pacsd import log
from pacsd.domain import uid
from pacsd.domain.errors import InvalidObject, Refusal
from pacsd.domain.limits import MiB
from pacsd.domain.outcomes import Result
from pacsd.domain.received import Spooled
from pacsd.domain.uploaded import received_from_upload
from pacsd.services.archive import Archive
from pacsd.web import multipart, statuses, urls
from pacsd.web.accept import MalformedMediaType, negotiate, parse_media_type
from pacsd.web.statuses import BAD_REQUEST, NOT_ACCEPTABLE, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, HttpError

_log = log.get("pacsd.stow")

ROOT = "/dicomweb/studies"
DICOM = "application/dicom"
OFFERS = ("application/dicom+json", "application/json")
IN_MEMORY_PART = multipart.MEMORY_LIMIT  # a part's dataset past this is handed to the ingest as a file
PENDING_MEMORY = 16 * MiB
FILE_META_ROOM = (
    64 * 1024
)  # a part's preamble and file meta, on top of its dataset  # parts held in memory while the rest of the body arrives
ACCEPTED_TYPES = 'multipart/related; type="application/dicom" or application/dicom'


@dataclass
class Upload:
    """One part of the body, held until the body is complete."""

    number: int  # from 1
    body: IO[bytes]
    size: int
    refused: str = ""  # why it is not taken, before reading it


@dataclass
class Answer:
    """What became of one part."""

    number: int
    sop_class_uid: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    failure: int | None = None
    warning: int | None = None
    comment: str = ""


class StowRoutes:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.spool_dir = str(archive.storage.tmp)
        # A part is bounded as it streams (the disk is not filled first): by
        # the largest object any SOP class may be, plus room for its file meta.
        largest = max([archive.limits.max_object_bytes, *archive.limits.object_bytes_by_class.values()])
        self.part_limit = largest + FILE_META_ROOM

    def routes(self) -> list[Route]:
        return [
            Route(ROOT, self.store, methods=["POST"]),
            Route(ROOT + "/{study}", self.store, methods=["POST"]),
        ]

    async def store(self, request: Request) -> Response:
        study: str | None = request.path_params.get("study")
        if study is not None and not uid.is_valid(study):
            raise HttpError(BAD_REQUEST, f"{study!r} in the path is not a valid Study Instance UID; nothing stored")
        accept = request.headers.get("accept")
        chosen = negotiate(accept, OFFERS)
        if chosen is None:
            raise HttpError(NOT_ACCEPTABLE, f"Accept {accept!r}: STOW-RS answers in {' or '.join(OFFERS)}")
        log_fields = log_fields_of(request)
        uploads = await self._receive(request)
        try:
            answers = await run_in_threadpool(self._store_all, uploads, study, log_fields)
        finally:
            for upload in uploads:
                upload.body.close()
        status, body = response(answers, urls.request_base(request), study)
        return Response(encode(body), status, media_type=chosen.media_type.essence)

    # -- the body ------------------------------------------------------------

    async def _receive(self, request: Request) -> list[Upload]:
        content_type = request.headers.get("content-type", "")
        if not content_type.strip():
            raise HttpError(UNSUPPORTED_MEDIA_TYPE, f"no Content-Type: send {ACCEPTED_TYPES}")
        try:
            media = parse_media_type(content_type)
        except MalformedMediaType as exc:
            raise HttpError(BAD_REQUEST, f"malformed Content-Type: {exc}") from None
        if media.essence == DICOM:
            return [await self._single(request)]
        if media.essence != "multipart/related":
            raise HttpError(UNSUPPORTED_MEDIA_TYPE, f"Content-Type {media.essence}: send {ACCEPTED_TYPES}")
        kind = media.param("type")
        if kind is not None and kind != DICOM:
            raise HttpError(
                UNSUPPORTED_MEDIA_TYPE,
                f"multipart/related of type {kind}: pacsd stores Part 10 files (type={DICOM}) only; "
                "uploads of metadata with bulk data (application/dicom+json, application/dicom+xml) are not supported",
            )
        uploads: list[Upload] = []
        in_memory = 0
        try:
            parts = multipart.read_parts(
                request.stream(), content_type, Path(self.spool_dir), part_limit=self.part_limit
            )
            async for part in parts:
                upload = Upload(part.number, part.body, part.size, _refused(part))
                uploads.append(upload)
                if part.size <= IN_MEMORY_PART:
                    in_memory += part.size
                    if in_memory > PENDING_MEMORY and isinstance(part.body, tempfile.SpooledTemporaryFile):
                        part.body.rollover()  # many small parts: the later ones wait on disk
        except multipart.PartTooLarge as exc:
            for upload in uploads:
                upload.body.close()
            _log.warning("budget_exceeded", budget="max_object_bytes", reason=str(exc), **log_fields_of(request))
            raise HttpError(
                PAYLOAD_TOO_LARGE, f"{exc} (max_object_bytes); nothing stored", budget="max_object_bytes"
            ) from None
        except (multipart.MalformedMultipart, ClientDisconnect) as exc:
            for upload in uploads:
                upload.body.close()
            why = str(exc) if isinstance(exc, multipart.MalformedMultipart) else "the client went away"
            _log.warning("stow_malformed", reason=why, parts_read=len(uploads), **log_fields_of(request))
            raise HttpError(BAD_REQUEST, f"malformed multipart body: {why}; nothing stored") from None
        return uploads

    async def _single(self, request: Request) -> Upload:
        """A body that is one Part 10 file."""
        body = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_PART, dir=self.spool_dir)
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.part_limit:
                    body.close()
                    message = f"body is larger than {self.part_limit} bytes (max_object_bytes); nothing stored"
                    raise HttpError(PAYLOAD_TOO_LARGE, message, budget="max_object_bytes")
                body.write(chunk)
        except ClientDisconnect:
            body.close()
            raise HttpError(BAD_REQUEST, "the client went away before the body ended; nothing stored") from None
        if not size:
            body.close()
            raise HttpError(BAD_REQUEST, "empty body: no DICOM file to store")
        return Upload(1, body, size)

    # -- storing (in a worker thread) ------------------------------------------

    def _store_all(self, uploads: list[Upload], study: str | None, log_fields: dict[str, Any]) -> list[Answer]:
        return [self._store_one(upload, study, log_fields) for upload in uploads]

    def _store_one(self, upload: Upload, study: str | None, log_fields: dict[str, Any]) -> Answer:
        start = time.perf_counter()
        answer = Answer(upload.number)
        received = None
        try:
            if upload.refused:
                raise InvalidObject(upload.refused)
            received = received_from_upload(upload.body, upload.size, self.spool_dir, IN_MEMORY_PART)
            answer.sop_class_uid, answer.sop_uid = received.sop_class_uid, received.sop_instance_uid
            outcome = self.archive.store_upload(received, study)
        except Exception as exc:
            answer.failure, answer.comment = statuses.stow_failure(exc)
            if not isinstance(exc, Refusal):  # a bug: logged with its traceback, the other parts go on
                _log.exception("stow_failed", part=upload.number, sop_instance_uid=answer.sop_uid, **log_fields)
            _log.warning("stow_refused", part=upload.number, sop_instance_uid=answer.sop_uid,
                         failure_reason=f"0x{answer.failure:04X}", reason=answer.comment, ms=log.ms_since(start),
                         **log_fields)  # fmt: skip
            return answer
        finally:
            if received is not None and isinstance(received.dataset, Spooled):
                received.dataset.discard()
        header = outcome.header
        answer.study_uid, answer.series_uid = header.study_uid, header.series_uid
        if outcome.result is Result.DUPLICATE_KEPT:
            answer.failure, answer.comment = statuses.STOW_DUPLICATE_KEPT, outcome.comment
            _log.warning("stow_refused", part=upload.number, sop_instance_uid=answer.sop_uid,
                         failure_reason=f"0x{answer.failure:04X}", reason=answer.comment, ms=log.ms_since(start),
                         **log_fields)  # fmt: skip
            return answer
        if header.problems:  # stored, with these index fields left empty
            answer.warning = statuses.STOW_INDEX_VALUES_IGNORED
            answer.comment = "stored as sent; left out of the index: " + "; ".join(
                f"{p.keyword} {p.value!r} ({p.why})" for p in header.problems
            )
        _log.info("stow_stored", part=upload.number, result=outcome.result.value, sop_instance_uid=answer.sop_uid,
                  study_uid=header.study_uid, size=upload.size, ms=log.ms_since(start),
                  **({"warning_reason": f"0x{answer.warning:04X}", "reason": answer.comment} if answer.warning else {}),
                  **log_fields)  # fmt: skip
        return answer


def _refused(part: multipart.Part) -> str:
    """Why *part* is not taken: a Content-Type of its own other than
    application/dicom (a part without one is taken as one)."""
    if "content-type" in part.headers and part.content_type.essence != DICOM:
        return f"part {part.number} is {part.content_type.essence}, not {DICOM}"
    return ""


def log_fields_of(request: Request) -> dict[str, Any]:
    return {"peer": request.client.host if request.client else "", "study_uid_path": request.path_params.get("study")}


# -- the answer -------------------------------------------------------------------


def response(answers: list[Answer], base: str, study: str | None) -> tuple[int, dict[str, Any]]:
    """The HTTP status and the Store Instances Response (PS3.18 I.1) as DICOM JSON."""
    root = base + ROOT
    stored = [a for a in answers if a.failure is None]
    failed = [a for a in answers if a.failure is not None]
    studies = {a.study_uid for a in stored}
    top = study or (next(iter(studies)) if len(studies) == 1 else None)
    body: dict[str, Any] = {"00081190": _value("UR", f"{root}/{top}" if top else None)}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_failed_item(a) for a in failed]}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [_stored_item(a, root) for a in stored]}
    if not stored:
        return statuses.CONFLICT, body
    if failed or any(a.warning is not None for a in stored):
        return statuses.ACCEPTED, body
    return statuses.OK, body


def _stored_item(answer: Answer, root: str) -> dict[str, Any]:
    url = f"{root}/{answer.study_uid}/series/{answer.series_uid}/instances/{answer.sop_uid}"
    item = _reference(answer)
    item["00081190"] = _value("UR", url)
    if answer.warning is not None:
        item["00081196"] = _value("US", answer.warning)
        item = {"00000902": _value("LO", answer.comment), **item}
    return item


def _failed_item(answer: Answer) -> dict[str, Any]:
    return {"00000902": _value("LO", answer.comment), **_reference(answer), "00081197": _value("US", answer.failure)}


def _reference(answer: Answer) -> dict[str, Any]:
    return {"00081150": _value("UI", answer.sop_class_uid), "00081155": _value("UI", answer.sop_uid)}


def _value(vr: str, value: str | int | None) -> dict[str, Any]:
    """A DICOM JSON attribute: an empty one has no "Value" (PS3.18 F.2.5)."""
    return {"vr": vr} if value in (None, "") else {"vr": vr, "Value": [value]}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()
